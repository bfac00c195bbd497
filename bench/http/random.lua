-- wrk script: POST increment to one of 10,000 counters, picked at random
-- per request. Each wrk thread seeds its own generator differently.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
end

wrk.method = "POST"
wrk.body = "1"
wrk.headers["Content-Type"] = "application/json"

function request()
  return wrk.format(nil, "/v1/objects/counter/c" .. math.random(0, 9999) .. "/increment")
end
