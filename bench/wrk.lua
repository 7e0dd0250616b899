-- The load of `make bench`: one POST body, sent over and over on keep-alive connections.
-- Arguments after "--": <body file> <content type> [statuses]. With "statuses" every
-- response's status is counted (wrk then parses headers: a little slower; the overload run
-- needs it to tell 503 from other errors). done() prints one JSON line for the harness.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = args[2]
  statuses = {}
  if args[3] == "statuses" then
    response = function(status, headers, body)
      statuses[status] = (statuses[status] or 0) + 1
    end
  end
end

local function percentiles(latency)
  local out = {}
  for _, p in ipairs({50, 75, 90, 95, 97.5, 99, 99.5, 99.75, 99.9, 99.99}) do
    out[#out + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  return "{" .. table.concat(out, ",") .. "}"
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    parts[#parts + 1] = string.format('"%d":%d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status_errors":%d,"timeout":%d,"latency_us":%s,"latency_max_us":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    percentiles(latency), latency.max, table.concat(parts, ",")))
end
