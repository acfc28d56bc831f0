"""The cached diffusion policy, torch and numpy only: its config, the DP-T model and encoders, the sampler, the
block cache and its schedules (ACS, calibration), inference backends, the runner policy_node and the harness
call, and training and benchmarking."""
