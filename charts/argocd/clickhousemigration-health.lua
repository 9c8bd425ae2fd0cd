-- Argo CD health check for chmigrate.io/ClickHouseMigration (Lua 5.1). Install
-- it under the argocd-cm key
--   resource.customizations.health.chmigrate.io_ClickHouseMigration
-- A migration is healthy once every set that includes it applied it (or
-- skipped it as meant for another environment, or rolled it back on purpose).
local hs = { status = "Progressing", message = "Not picked up by a MigrationSet yet" }
if obj.status == nil or obj.status.sets == nil or #obj.status.sets == 0 then
  return hs
end
-- Changed since the operator last wrote its status: not applied yet.
if obj.metadata ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
   and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.message = "Changed since it was applied: waiting for the MigrationSet"
  return hs
end
local waiting = nil
for _, s in ipairs(obj.status.sets) do
  if s.phase == "Failed" then
    hs.status = "Degraded"
    hs.message = "Failed in set " .. s.set .. ": " .. (s.lastError or "")
    return hs
  end
  if s.phase == "Pending" or s.phase == "Running" then
    waiting = waiting or (s.phase .. " in set " .. s.set .. " (" .. tostring(s.hostsDone) .. "/" .. tostring(s.hostsTotal) .. " hosts)")
  end
end
if waiting ~= nil then
  hs.message = waiting
  return hs
end
hs.status = "Healthy"
hs.message = tostring(obj.status.phase or "Applied")
return hs
