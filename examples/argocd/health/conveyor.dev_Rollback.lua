-- Argo CD health check for conveyor.dev/Rollback (resource.customizations.health.conveyor.dev_Rollback).
local hs = {status = "Progressing", message = "Waiting for Conveyor to plan the rollback"}
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local phase = obj.status.phase
hs.message = obj.status.message or phase
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "Blocked" or phase == "Refused" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
return hs
