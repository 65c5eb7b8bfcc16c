-- wrk script: BatchGetItem of 100 distinct keys (a run of consecutive keys from a random
-- start, wrapping around N, env GRANARY_KEYS), eventually consistent.
local keys = tonumber(os.getenv("GRANARY_KEYS") or "100000")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.BatchGetItem"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local start = math.random(1, keys)
  local list = {}
  for i = 0, 99 do
    list[#list + 1] = '{"pk":{"S":"user' .. ((start + i - 1) % keys + 1) .. '"}}'
  end
  return wrk.format(nil, "/", nil, '{"RequestItems":{"bench":{"Keys":[' .. table.concat(list, ",") .. ']}}}')
end
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
