-- The process group of the command a change is running, recorded when it starts and cleared
-- when it ends, so a server restarted after a crash can tell whether anything of it still runs
-- (same boot, same group leader) and stop it, and say truthfully what happened.
ALTER TABLE executions ADD COLUMN pgid BIGINT;
-- The leader's start time (clock ticks since boot, /proc/PID/stat field 22): a group ID reused
-- by an unrelated process after ours ended is told apart by it.
ALTER TABLE executions ADD COLUMN leader_start BIGINT;
-- /proc/sys/kernel/random/boot_id: after a reboot nothing of the command can be running.
ALTER TABLE executions ADD COLUMN boot_id TEXT;
