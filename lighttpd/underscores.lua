-- Drop request header fields whose names contain "_" before lighttpd
-- passes them on: as CGI variables, "X_User" and "X-User" are both
-- HTTP_X_USER, and the client's "X_User" could pose as a field a proxy in
-- front set as "X-User" (nginx and Apache drop them the same way).
local headers = lighty.r.req_header
local dropped = {}
for name in pairs(headers) do
  if string.find(name, "_", 1, true) then
    dropped[#dropped + 1] = name
  end
end
for _, name in ipairs(dropped) do
  headers[name] = nil
end
