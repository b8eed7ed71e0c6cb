/*
** supervisor.h: spindle --workers (supervisor.c), for main.c: the
** supervisor process, and the drain period a single process or a worker
** uses on SIGTERM/SIGINT.
*/
#ifndef SP_SUPERVISOR_H
#define SP_SUPERVISOR_H

/* The drain period in seconds (--drain; default 10): how long a reactor
** stopped by SIGTERM or SIGINT waits for open connections to finish.
** Call before any Lua runs. */
void sp_supervisor_set_drain(double seconds);

/* Run the supervisor of `workers` processes, each `argv[0]` (this binary)
** with --drain and argv[1..argc-1] (the options and script, --workers
** removed). Runs no Lua; returns the process's exit status: 0 after a
** graceful stop (SIGTERM, SIGINT), 1 when it gave up on workers that fail
** at start-up. A second SIGTERM/SIGINT exits at once with 128 + signo. */
int sp_supervisor_main(int argc, char **argv, int workers);

#endif
