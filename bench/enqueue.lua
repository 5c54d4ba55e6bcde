-- wrk script of `make bench`: closed-loop POSTs of single light jobs, each with its own record_id.
-- The bench sets IMGPROC_WRK_KEY, IMGPROC_WRK_PATH and IMGPROC_WRK_URL in wrk's environment.
local key = os.getenv("IMGPROC_WRK_KEY")
local path = os.getenv("IMGPROC_WRK_PATH")
local image_url = os.getenv("IMGPROC_WRK_URL")
local threads = {}
local counter = 0
local tag = 0

function setup(thread)
  tag = tag + 1
  thread:set("tag", tag)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = key
  statuses = {}
end

function request()
  counter = counter + 1
  local body = string.format('{"record_id":"wrk-%d-%d","image_url":"%s","options":{"resize":[64,64]}}',
                             tag, counter, image_url)
  return wrk.format(nil, path, nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      if status ~= 202 then bad = bad + n end
    end
  end
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"non_202": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, bad, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
