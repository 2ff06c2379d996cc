-- Argo CD health check for conveyor.dev/Approval (resource.customizations.health.conveyor.dev_Approval).
-- An Approval that does not count (not an approver, self-approval, expired...) is Degraded: it
-- will never open the stage, and someone should know.
local hs = {status = "Progressing", message = "Waiting for Conveyor to judge the approval"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Counted" then
    hs.message = c.message or c.reason
    if c.status == "True" then
      hs.status = "Healthy"
    elseif c.reason == "UnknownRelease" then
      hs.status = "Progressing"
    else
      hs.status = "Degraded"
    end
  end
end
return hs
