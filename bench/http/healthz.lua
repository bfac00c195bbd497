-- wrk script: GET /healthz, the gateway's floor (no object, no storage).
wrk.method = "GET"
wrk.path = "/healthz"
