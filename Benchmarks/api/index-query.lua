-- wrk script: Query of one random partition key's 100 items (GRANARY_PARTITIONS keys) of
-- table "pages": on the table (sort key sk), or on index GRANARY_INDEX: "by-n" (local, sort
-- key n) or "by-g" (global, partition key g = "g" .. the partition key, sort key n).
local partitions = tonumber(os.getenv("GRANARY_PARTITIONS") or "1000")
local index = os.getenv("GRANARY_INDEX") or ""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.Query"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local p = math.random(1, partitions)
  local body
  if index == "by-g" then
    body = '{"TableName":"pages","IndexName":"by-g","KeyConditionExpression":"g = :g","Limit":100,'
      .. '"ExpressionAttributeValues":{":g":{"S":"gp' .. p .. '"}}}'
  elseif index == "by-n" then
    body = '{"TableName":"pages","IndexName":"by-n","KeyConditionExpression":"pk = :p","Limit":100,'
      .. '"ExpressionAttributeValues":{":p":{"S":"p' .. p .. '"}}}'
  else
    body = '{"TableName":"pages","KeyConditionExpression":"pk = :p","Limit":100,'
      .. '"ExpressionAttributeValues":{":p":{"S":"p' .. p .. '"}}}'
  end
  return wrk.format(nil, "/", nil, body)
end
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
