-- Fault injection for chunk requests (tests/lib/nginx.sh).  The mode is
-- read from the file named by $fault_file on every request:
--   off | 503 N | drop N | stall N SECS | trunc N | flip N | delay MS
--   | hold TEXT  (503 for the URIs that contain TEXT, the rest served)
-- N counts failing requests per URI (0: all of them), per fault setting.
local path = ngx.var.document_root .. ngx.var.uri
local f = io.open(ngx.var.fault_file)
local mode = f and f:read("*l") or "off"
if f then f:close() end
local gf = io.open(ngx.var.fault_file .. ".gen")
local gen = gf and gf:read("*l") or "0"
if gf then gf:close() end
local words = {}
for w in mode:gmatch("%S+") do words[#words + 1] = w end
local kind, n = words[1], tonumber(words[2] or "0")

local bf = io.open(path, "rb")
if not bf then return ngx.exit(404) end
local body = bf:read("*a")
bf:close()

local function fails()
	if n == 0 then return true end
	local dict = ngx.shared.faults
	local key = gen .. ngx.var.uri
	local c = dict:incr(key, 1, 0)
	return c <= n
end

if kind == "hold" then
	if words[2] and ngx.var.uri:find(words[2], 1, true) then
		return ngx.exit(503)
	end
elseif kind == "delay" then
	ngx.sleep((n or 0) / 1000)
elseif kind ~= "off" and kind ~= nil and fails() then
	if kind == "503" then
		return ngx.exit(503)
	elseif kind == "drop" then
		-- promise the whole body, send half, then close
		ngx.header["Content-Length"] = #body
		ngx.print(body:sub(1, math.floor(#body / 2)))
		ngx.flush(true)
		return ngx.exit(444)
	elseif kind == "stall" then
		ngx.sleep(tonumber(words[3] or "5"))
	elseif kind == "trunc" then
		body = body:sub(1, #body - 7)
	elseif kind == "flip" then
		local i = math.floor(#body / 2)
		body = body:sub(1, i - 1) .. string.char((body:byte(i) + 1) % 256)
			.. body:sub(i + 1)
	end
end
ngx.header["Content-Length"] = #body
ngx.print(body)
