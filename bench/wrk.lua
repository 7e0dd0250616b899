-- The load of `make bench`: one POST body, sent over and over on keep-alive connections.
-- Arguments after "--": <body file> <content type> <"statuses" or "-"> ["Name: value" ...]
-- (extra request headers). done() prints one JSON line for the harness.
--
-- With "statuses" every response's status is counted (wrk then parses headers: a little
-- slower), and each request carries its send time (a monotonic clock, in microseconds) as
-- its X-Request-ID, which the inference service echoes: the latency of the answers that
-- were served (200) can then be told apart from that of fast refusals (503). wrk's own
-- histogram mixes both.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *now);
]]
local timespec = ffi.new("bench_timespec")
local CLOCK_MONOTONIC = 1

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000000 + math.floor(tonumber(timespec.tv_nsec) / 1000)
end

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
  for i = 4, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
  statuses = {}
  served = {}
  if args[3] == "statuses" then
    request = function()
      local headers = {}
      for name, value in pairs(wrk.headers) do
        headers[name] = value
      end
      headers["X-Request-ID"] = string.format("%d", now_us())
      return wrk.format(nil, nil, headers)
    end
    response = function(status, headers, body)
      statuses[status] = (statuses[status] or 0) + 1
      local sent = tonumber(headers["X-Request-ID"] or "")
      if status == 200 and sent then
        served[#served + 1] = now_us() - sent
      end
    end
  end
end

local function percentiles(latency)
  local out = {}
  for _, p in ipairs({50, 75, 90, 95, 97.5, 99, 99.25, 99.5, 99.75, 99.9, 99.95, 99.99}) do
    out[#out + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  return "{" .. table.concat(out, ",") .. "}"
end

local function served_percentiles(all)
  if #all == 0 then
    return "{}"
  end
  table.sort(all)
  local function at(p)
    return all[math.max(1, math.ceil(#all * p / 100))]
  end
  return string.format('{"count":%d,"50":%d,"99":%d,"max":%d}', #all, at(50), at(99), all[#all])
end

function done(summary, latency, requests)
  local counts, all_served = {}, {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + n
    end
    for _, us in ipairs(thread:get("served") or {}) do
      all_served[#all_served + 1] = us
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    parts[#parts + 1] = string.format('"%d":%d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status_errors":%d,"timeout":%d,"latency_us":%s,"latency_max_us":%d,"statuses":{%s},' ..
    '"served_us":%s}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    percentiles(latency), latency.max, table.concat(parts, ","), served_percentiles(all_served)))
end
