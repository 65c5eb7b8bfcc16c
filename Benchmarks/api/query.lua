-- wrk script: Query of one random partition key's 100 items (GRANARY_PARTITIONS keys),
-- or, for nginx, a POST to GRANARY_PATH answered with a static copy of such a page.
local partitions = tonumber(os.getenv("GRANARY_PARTITIONS") or "1000")
local path = os.getenv("GRANARY_PATH") or "/"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.Query"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  return wrk.format(nil, path, nil, '{"TableName":"pages","KeyConditionExpression":"pk = :p","Limit":100,' ..
    '"ExpressionAttributeValues":{":p":{"S":"p' .. math.random(1, partitions) .. '"}}}')
end
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
