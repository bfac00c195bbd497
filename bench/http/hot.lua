-- wrk script: POST increment to one hot counter (every request, every
-- connection: the same object, so turns run one at a time).
wrk.method = "POST"
wrk.body = "1"
wrk.headers["Content-Type"] = "application/json"
wrk.path = "/v1/objects/counter/hot/increment"
