-- bench/put.lua - wrk script: PUT a 4 KiB value (VALUE_SIZE bytes) to the
-- URL's path on every request, keep-alive. wrk adds the Content-Length.
local size = tonumber(os.getenv("VALUE_SIZE") or "4096")
wrk.method = "PUT"
wrk.body = string.rep("v", size)
wrk.headers["Content-Type"] = "application/octet-stream"
