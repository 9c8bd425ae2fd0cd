-- Runs the two health checks on sample statuses: `lua5.1 check.lua` from
-- this folder (tests/gitops.rs does). Exits non-zero on the first mismatch.
local dir = arg and arg[0] and arg[0]:match("(.*/)") or "./"
local function health(script, o)
  obj = o
  local hs = dofile(dir .. script)
  obj = nil
  return hs
end
local failures = 0
local function expect(script, name, o, status, needle)
  local hs = health(script, o)
  local ok = hs.status == status and (needle == nil or string.find(hs.message, needle, 1, true) ~= nil)
  print(string.format("%s %-44s %-11s %s", ok and "ok  " or "FAIL", name, hs.status, hs.message))
  if not ok then failures = failures + 1 end
end
local function cond(t, s, r, m) return { type = t, status = s, reason = r, message = m } end
local set = "migrationset-health.lua"
expect(set, "no status yet", { metadata = { generation = 1 }, spec = {} }, "Progressing", "Waiting")
expect(set, "old generation", { metadata = { generation = 2 }, spec = {}, status = { observedGeneration = 1,
  conditions = { cond("Ready", "True", "Applied", "") } } }, "Progressing", "latest spec")
expect(set, "ready", { metadata = { generation = 3 }, spec = {}, status = { observedGeneration = 3, appliedVersion = "4",
  conditions = { cond("Ready", "True", "Applied", ""), cond("Reconciling", "False", "Applied", ""),
                 cond("Stalled", "False", "Applied", "") } } }, "Healthy", "Applied version 4")
expect(set, "checksum mismatch", { metadata = { generation = 3 }, spec = {}, status = { observedGeneration = 3,
  conditions = { cond("Ready", "False", "ChecksumMismatch", "V1 was applied with checksum a"),
                 cond("Stalled", "True", "ChecksumMismatch", "V1 was applied with checksum a") } } },
  "Degraded", "ChecksumMismatch: V1 was applied")
expect(set, "hosts pending", { metadata = { generation = 3 }, spec = {}, status = { observedGeneration = 3,
  conditions = { cond("Ready", "False", "HostsPending", "1 statement(s) not finished"),
                 cond("Reconciling", "True", "HostsPending", "1 statement(s) not finished"),
                 cond("Stalled", "False", "HostsPending", "") } } }, "Progressing", "HostsPending")
expect(set, "suspended", { metadata = { generation = 1 }, spec = { policy = { suspend = true } } }, "Suspended", "suspend")
expect(set, "dry run", { metadata = { generation = 3 }, spec = { policy = { dryRun = true } }, status = { observedGeneration = 3,
  conditions = { cond("Ready", "False", "DryRun", "dry run: 2 step(s) planned"), cond("Reconciling", "False", "DryRun", ""),
                 cond("Stalled", "False", "DryRun", "") } } }, "Suspended", "DryRun")
expect(set, "a migration changed, before any SQL", { metadata = { generation = 3 }, spec = {}, status = { observedGeneration = 3,
  conditions = { cond("Ready", "False", "Reconciling", "applying a change"), cond("Reconciling", "True", "Reconciling", "applying a change"),
                 cond("Stalled", "False", "Reconciling", "") } } }, "Progressing", "Reconciling")
local m = "clickhousemigration-health.lua"
expect(m, "migration without status", {}, "Progressing", "Not picked up")
expect(m, "applied in every set", { status = { phase = "Applied", sets = {
  { set = "a", phase = "Applied", hostsDone = 4, hostsTotal = 4 },
  { set = "b", phase = "Skipped", hostsDone = 0, hostsTotal = 1 } } } }, "Healthy", "Applied")
expect(m, "running on 3 of 4 hosts", { status = { phase = "Running", sets = {
  { set = "a", phase = "Running", hostsDone = 3, hostsTotal = 4 } } } }, "Progressing", "3/4 hosts")
expect(m, "failed", { status = { phase = "Failed", sets = {
  { set = "a", phase = "Applied", hostsDone = 1, hostsTotal = 1 },
  { set = "b", phase = "Failed", hostsDone = 0, hostsTotal = 1, lastError = "Code: 62" } } } }, "Degraded", "Code: 62")
expect(m, "changed after it was applied", { metadata = { generation = 2 }, status = { observedGeneration = 1, phase = "Applied", sets = {
  { set = "a", phase = "Applied", hostsDone = 1, hostsTotal = 1 } } } }, "Progressing", "Changed since")
if failures > 0 then
  print(failures .. " health check case(s) failed")
  os.exit(1)
end
print("all health check cases passed")
