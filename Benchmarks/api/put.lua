-- wrk script: durable PutItem of a 1 KB item under a random key of N (env GRANARY_KEYS).
local keys = tonumber(os.getenv("GRANARY_KEYS") or "100000")
local value = string.rep("x", 1000)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.PutItem"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local body = '{"TableName":"bench","Item":{"pk":{"S":"user' .. math.random(1, keys) .. '"},"v":{"S":"' .. value .. '"}}}'
  return wrk.format(nil, "/", nil, body)
end
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
