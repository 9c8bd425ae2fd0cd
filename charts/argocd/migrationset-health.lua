-- Argo CD health check for chmigrate.io/MigrationSet (Lua 5.1, as Argo CD
-- runs it). Install it under the argocd-cm key
--   resource.customizations.health.chmigrate.io_MigrationSet
-- It reads the kstatus conditions the operator writes.
local hs = { status = "Progressing", message = "Waiting for the chmigrate operator" }
local function condition(t)
  if obj.status == nil or obj.status.conditions == nil then return nil end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == t then return c end
  end
  return nil
end
if obj.spec ~= nil and obj.spec.policy ~= nil and obj.spec.policy.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.policy.suspend is true"
  return hs
end
if obj.status == nil then return hs end
if obj.metadata ~= nil and obj.metadata.generation ~= nil
   and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.message = "The operator has not seen the latest spec yet"
  return hs
end
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. (stalled.message or "")
  return hs
end
local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = "Applied version " .. tostring(obj.status.appliedVersion or "none")
  return hs
end
if ready ~= nil then
  hs.message = (ready.reason or "Reconciling") .. ": " .. (ready.message or "")
end
-- Not ready, not reconciling, not stalled: idle on purpose (a dry run, or
-- suspended), never "Progressing" forever.
local reconciling = condition("Reconciling")
if ready ~= nil and ready.status == "False" and reconciling ~= nil and reconciling.status == "False"
   and (stalled == nil or stalled.status == "False") then
  hs.status = "Suspended"
end
return hs
