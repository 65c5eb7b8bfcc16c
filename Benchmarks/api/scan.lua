-- wrk script: Scan of one random segment of GRANARY_SEGMENTS (a parallel full scan's
-- requests), or, for nginx, a POST to GRANARY_PATH answered with a static copy of one.
local segments = tonumber(os.getenv("GRANARY_SEGMENTS") or "200")
local path = os.getenv("GRANARY_PATH") or "/"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.Scan"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  return wrk.format(nil, path, nil, '{"TableName":"pages","TotalSegments":' .. segments .. ',"Segment":' ..
    math.random(0, segments - 1) .. '}')
end
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
