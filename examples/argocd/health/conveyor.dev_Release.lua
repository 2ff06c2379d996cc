-- Argo CD health check for conveyor.dev/Release (resource.customizations.health.conveyor.dev_Release).
-- Lua 5.1, as Argo CD runs it. Maps the release's phase and conditions to an Argo CD health status.
local hs = {status = "Progressing", message = "Waiting for Conveyor to accept the release"}
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation or 0
if obj.status.observedGeneration ~= nil and obj.status.observedGeneration < generation then
  hs.message = "Conveyor has not seen the latest spec yet"
  return hs
end
local phase = obj.status.phase
local stage = obj.status.currentStage or "?"
hs.message = obj.status.message or phase
local reason = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then reason = c.reason end
  end
end
if obj.status.vetoed == true then
  hs.status = "Degraded"
  hs.message = "vetoed by rollback " .. (obj.status.vetoedBy or "?") .. ": never promoted again"
elseif phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Superseded" then
  hs.status = "Healthy"
  hs.message = "superseded by a newer release: " .. hs.message
elseif phase == "Failed" or phase == "RolledBack" or phase == "Cancelled" or phase == "Vetoed" then
  hs.status = "Degraded"
  hs.message = phase .. " in " .. stage .. ": " .. hs.message
elseif phase == "AwaitingApproval" then
  hs.status = "Suspended"
  hs.message = "awaiting approval for " .. stage .. ": " .. hs.message
elseif reason == "ParityBlocked" or reason == "PipelineNotFound" or reason == "UnknownTargetStage" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
return hs
