--- spec.support.certs: keys and certificates for the TLS specs, made at
-- test time with the openssl command (scripts/ssl/make_certs.sh) in a
-- temporary folder, once per process, removed when the process exits.
-- Certificates and keys never go into git.
--
--   local certs = require("spec.support.certs")()
--   certs.ca, certs.server, certs.serverKey, certs.client, certs.clientKey,
--   certs.bad, certs.badKey (signed by certs.evilCa, which nobody trusts),
--   certs.dir
local made

-- Removes the folder when collected (at the latest, when Lua closes).
local Cleanup = {__gc = function(self)
  os.execute("rm -rf '" .. self.dir .. "'")
end}

return function()
  if made then return made end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local ok = os.execute("sh scripts/ssl/make_certs.sh '" .. dir ..
    "' >/dev/null 2>&1")
  assert(ok, "scripts/ssl/make_certs.sh failed (is openssl installed?)")
  local function p(name) return dir .. "/" .. name end
  made = {
    dir = dir,
    ca = p("ca.crt"), caKey = p("ca.key"),
    server = p("server.crt"), serverKey = p("server.key"),
    client = p("client.crt"), clientKey = p("client.key"),
    evilCa = p("evil-ca.crt"),
    bad = p("bad.crt"), badKey = p("bad.key"),
    _cleanup = setmetatable({dir = dir}, Cleanup),
  }
  return made
end
