/*
** signals.h: signal names, for the files that take a signal by name
** (process.c's signalProcess); signals.c is reactor.addSignalHandler.
*/
#ifndef SP_SIGNALS_H
#define SP_SIGNALS_H

/* The number of the signal called `name` ("TERM" or "SIGTERM"; the
** usual POSIX ones), or 0 if there is none. Any thread. */
int sp_signal_number(const char *name);

#endif
