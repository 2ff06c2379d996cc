-- Argo CD health check for conveyor.dev/Pipeline (resource.customizations.health.conveyor.dev_Pipeline).
-- Degraded when a stage's targets do not resolve, when a stage's cluster cannot be seen
-- (docs/multi-cluster.md), when the stages are not in parity, or when a stage runs an image no live
-- Release names (set by hand, or its release deleted mid-rollout).
local hs = {status = "Progressing", message = "Waiting for Conveyor to check the pipeline"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local ready, parity, tracked, reachable = nil, nil, nil, nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "InParity" then parity = c end
  if c.type == "Tracked" then tracked = c end
  if c.type == "ClustersReachable" then reachable = c end
end
if ready == nil then
  return hs
end
if ready.status ~= "True" then
  hs.status = "Degraded"
  hs.message = ready.message or ready.reason
  return hs
end
if reachable ~= nil and reachable.status == "False" then
  hs.status = "Degraded"
  hs.message = "cluster not seen: " .. (reachable.message or reachable.reason)
  return hs
end
if parity ~= nil and parity.status == "False" then
  hs.status = "Degraded"
  hs.message = "stages differ: " .. (parity.message or parity.reason)
  return hs
end
if tracked ~= nil and tracked.status == "False" then
  hs.status = "Degraded"
  hs.message = "untracked image: " .. (tracked.message or tracked.reason)
  return hs
end
hs.status = "Healthy"
hs.message = obj.status.summary or "targets resolved"
return hs
