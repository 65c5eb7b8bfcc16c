-- wrk script for etcd's JSON gateway (v3): ETCD_MODE=put writes a 1000-byte value under a
-- random key of N (env GRANARY_KEYS); ETCD_MODE=get reads one, linearizably (the default).
local keys = tonumber(os.getenv("GRANARY_KEYS") or "100000")
local mode = os.getenv("ETCD_MODE") or "put"
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(text)
  return ((text:gsub(".", function(c)
    local bits, byte = "", c:byte()
    for i = 8, 1, -1 do bits = bits .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return bits
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(bits)
    if #bits < 6 then return "" end
    local n = 0
    for i = 1, 6 do n = n + (bits:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return alphabet:sub(n + 1, n + 1)
  end) .. ({ "", "==", "=" })[#text % 3 + 1])
end
local value = base64(string.rep("x", 1000))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local key = base64("user" .. math.random(1, keys))
  if mode == "put" then
    return wrk.format(nil, "/v3/kv/put", nil, '{"key":"' .. key .. '","value":"' .. value .. '"}')
  end
  return wrk.format(nil, "/v3/kv/range", nil, '{"key":"' .. key .. '"}')
end
response = function(status, headers, body)
  if status ~= 200 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
