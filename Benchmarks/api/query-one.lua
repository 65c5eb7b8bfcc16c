-- wrk script: Query of a random key of N (env GRANARY_KEYS) in the "bench" table, whose
-- partition key has one item each: a one-item Query, the GetItem of the Query path.
local keys = tonumber(os.getenv("GRANARY_KEYS") or "100000")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.Query"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  return wrk.format(nil, "/", nil, '{"TableName":"bench","KeyConditionExpression":"pk = :k",' ..
    '"ExpressionAttributeValues":{":k":{"S":"user' .. math.random(1, keys) .. '"}}}')
end
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
