-- wrk script: GetItem with ConsistentRead of a random key of N (env GRANARY_KEYS).
local keys = tonumber(os.getenv("GRANARY_KEYS") or "100000")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.GetItem"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  return wrk.format(nil, "/", nil,
    '{"TableName":"bench","Key":{"pk":{"S":"user' .. math.random(1, keys) .. '"}},"ConsistentRead":true}')
end
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
