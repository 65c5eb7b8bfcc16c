-- wrk script: PutItem of a ~1 KB item under a random key of N (env GRANARY_KEYS) into table
-- GRANARY_TABLE, with five attributes g1..g5 that the table's global indexes (if any) key on.
local keys = tonumber(os.getenv("GRANARY_KEYS") or "100000")
local table_name = os.getenv("GRANARY_TABLE") or "bench"
local value = string.rep("x", 900)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.PutItem"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local n = math.random(1, keys)
  local indexed = ""
  for g = 1, 5 do indexed = indexed .. ',"g' .. g .. '":{"S":"v' .. ((n * g) % 1000) .. '"}' end
  local body = '{"TableName":"' .. table_name .. '","Item":{"pk":{"S":"user' .. n .. '"},"v":{"S":"' .. value .. '"}'
    .. indexed .. '}}'
  return wrk.format(nil, "/", nil, body)
end
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
