-- wrk script: PutItem of keys 1..N in order, each once per connection stride (the load phase).
local keys = tonumber(os.getenv("GRANARY_KEYS") or "100000")
local value = string.rep("x", 1000)
local counter = 0
local stride, offset = 1, 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810.PutItem"
local threads = {}
setup = function(thread) table.insert(threads, thread); thread:set("id", #threads) end
init = function(args) offset = id - 1; stride = #threads > 0 and #threads or 2 end
request = function()
  counter = counter + 1
  local key = ((counter - 1) * 2 + offset) % keys + 1
  return wrk.format(nil, "/", nil, '{"TableName":"bench","Item":{"pk":{"S":"user' .. key .. '"},"v":{"S":"' .. value .. '"}}}')
end
