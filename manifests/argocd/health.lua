-- Argo CD health of a WhatsAppInstance (docs/deploy.md, "Argo CD"): Argo CD runs this with the
-- live object as `obj` and reads the `hs` it returns. Install it as
-- resource.customizations.health.whatsapp.evolution-operator.io_WhatsAppInstance in argocd-cm.
local hs = {}
local status = obj.status or {}
local phase = status.phase
local detail = status.message or ""

local function says(text)
  if detail ~= "" then
    return text .. ": " .. detail
  end
  return text
end

local function condition(kind)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "being deleted: the operator removes the Evolution instance first"
  return hs
end

if (obj.spec ~= nil and obj.spec.suspend == true) or phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "probing is suspended (spec.suspend)"
  return hs
end

local stuck = condition("Stuck")
if stuck ~= nil and stuck.status == "True" and stuck.reason == "RemediationExhausted" then
  hs.status = "Degraded"
  hs.message = "stuck connecting, no forced logout left: " .. (stuck.message or "")
  return hs
end

if phase == nil or phase == "Pending" then
  hs.status = "Progressing"
  hs.message = "waiting for the operator's first probe"
elseif phase == "Connected" then
  hs.status = "Healthy"
  hs.message = "connected"
elseif phase == "Pairing" then
  hs.status = "Progressing"
  hs.message = "waiting for the driver to pair the phone"
elseif phase == "Connecting" then
  hs.status = "Progressing"
  hs.message = says("connecting")
elseif phase == "Disconnected" or phase == "LoggedOut" or phase == "NotFound" or phase == "Unresponsive" then
  hs.status = "Degraded"
  hs.message = says(phase)
elseif phase == "Unknown" then
  -- The probes fail (Evolution unreachable, its breaker open): the link's health cannot be told,
  -- and an outage of the server is not each instance's fault (docs/deploy.md).
  hs.status = "Unknown"
  hs.message = says("Evolution does not answer the probes")
else
  hs.status = "Unknown"
  hs.message = "phase " .. tostring(phase) .. " is not known to this health check"
end
return hs
