-- wrk script: one NSMC test review per POST /v1/classify, cycling through the file.
-- REVIEWS (env): the NSMC TSV; MAX_REVIEWS (env, default 5000).
local function json_string(s)
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == '\\' then return '\\\\' end
    return string.format('\\u%04x', c:byte())
  end)
  return '"' .. s .. '"'
end

local bodies = {}
local next_body = 1

function init(args)
  local path = os.getenv("REVIEWS")
  local limit = tonumber(os.getenv("MAX_REVIEWS") or "5000")
  local f = assert(io.open(path, "r"))
  f:read("*l")  -- header
  for line in f:lines() do
    local _, doc = line:match("^([^\t]*)\t([^\t]*)\t")
    if doc and #doc > 0 then bodies[#bodies + 1] = '{"text": ' .. json_string(doc) .. '}' end
    if #bodies >= limit then break end
  end
  f:close()
  next_body = 1 + (math.random(#bodies) - 1)
end

function request()
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/v1/classify", {["Content-Type"] = "application/json"}, body)
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

fivexx, fourxx = 0, 0  -- globals: done() reads them with thread:get
function response(status, headers, body)
  if status >= 500 then fivexx = fivexx + 1 elseif status >= 400 then fourxx = fourxx + 1 end
end

function done(summary, latency, requests)
  local f5, f4 = 0, 0
  for _, t in ipairs(threads) do
    f5 = f5 + (t:get("fivexx") or 0)
    f4 = f4 + (t:get("fourxx") or 0)
  end
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "texts_per_s": %.1f, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "status_4xx": %d, "status_5xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, f4, f5,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
