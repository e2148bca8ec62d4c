"""Route groups of the gateway: functions, instances, jobs, system."""
