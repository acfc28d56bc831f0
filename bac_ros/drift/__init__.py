"""Drift guard: a precomputed schedule assumes live observations drive the cached features the way the
calibration observations did (the BAC paper's stated limitation). The guard watches that at run time.

Two signals, each divided by its value on the calibration observations (stored in the schedule's
`calibration`, so each reads ~1 on data like the calibration's):

- `shadow_deviation` (the guard's): every `drift_check_every`-th inference is re-run at full precision
  from the same initial noise, and the mean squared difference of the two denoised sequences of joint
  targets (normalised units; not the gripper's open/close) is what caching cost on this observation. It
  needs a deterministic sampler (DDIM) and costs one full inference per check, run after the cached one has
  been handed on.
- `reuse_error` (free, published): whenever a block recomputes, `|y_k - reused_k| / |y_k|` between its
  new output and what the cache had been adding in its place (copy or forecast), averaged over one
  inference. It does not drive the guard: on shifted worlds it barely moved (docs/drift.md).

- `observation distance` (the guard's second signal, nearly free): at the same checks, the squared Mahalanobis
  distance of the observation encoder's output (image features and normalised joint state: what the denoiser
  is conditioned on) from the closed-loop reference's observations. It says the robot sees what calibration
  never showed (a moved camera, another cube) before the cache's error grows.

The check is `GuardedInference`'s, over whole inferences of any backend (`policy.inference`); the reuse error
is measured on the eager backend only.

Reference (`SignalReference`): ln(shadow deviation) on the policy's own closed-loop observations of the
calibration world, run by the schedule itself (`bac schedule --reference FILE --closed-loop N`: the
robot's observations lie further from the demonstrations than the demonstrations do, so a reference from
demonstrations alone cries wolf); without one, a log-normal read off the demonstration statistics. The
observations of those episodes give the observation distance's reference (`observation_reference`): their
mean and whitening, and ln(distance) of each check scored by episode folds (a distance from statistics fitted
on the same observations is too small by what they overfit).

Policy (`DriftGuard`): a one-sided CUSUM per signal on z = (ln value - mean) / sd: S <- max(0, S + z - k). Either
S above its h/2 -> warn; above its h -> dense (run the dense schedule; watch only: would); a warning ends only when S is back
at 0 (no flicker at the edge). h is set on the reference's closed-loop episodes so that at most
`drift_false_alarm_rate` of them would raise an alarm with checks as far apart in robot time as the guard's
(`GuardedInference.pace`: policy_node infers every 1/30 s, a sync evaluation once a chunk, so the same
`drift_check_every` checks eight times as often on the robot; `bac eval` spaces its checks as policy_node's in
robot time) and never below what independent standard normal z would need (`normal_threshold`: a reference
of a few dozen episodes does not show its own tail); with both signals each h takes half the rate. Back to the
fast schedule after `drift_settle` checks in a row with both z < k on the dense schedule (the shadow deviation
against the dense schedule's own reference, the observations against the fast one's: the world's).
"""
