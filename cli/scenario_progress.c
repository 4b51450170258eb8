/* otalab scenario run: the one-line progress display of a long run (Issue
 * "Fleets": devices done, bytes, simulated time, ETA on a terminal; quiet in
 * CI: nothing when stdout is not a TTY, or with --quiet / --json). */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "scenario.h"

#define REDRAW_S 0.1

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int enabled(sc_run_t *run) {
  if (!run->prog_tty) {
    run->prog_tty = !run->quiet && !run->json && isatty(STDOUT_FILENO) ? 1 : -1;
    run->prog_t0 = wall();
  }
  return run->prog_tty > 0;
}

static void human_bytes(unsigned long long b, char *out, size_t cap) {
  if (b >= 10ull * 1024 * 1024)
    snprintf(out, cap, "%.1f MB", (double)b / (1024.0 * 1024.0));
  else if (b >= 10ull * 1024)
    snprintf(out, cap, "%.1f KB", (double)b / 1024.0);
  else
    snprintf(out, cap, "%llu B", b);
}

void sc_progress(sc_run_t *run, double t, int simulated) {
  if (!enabled(run))
    return;
  double now = wall();
  if (run->prog_last > 0 && now - run->prog_last < REDRAW_S)
    return;
  run->prog_last = now;
  int done = 0;
  unsigned long long bytes = 0, planned = 0;
  for (int i = 0; i < run->ndev; i++) {
    const sc_dev_t *d = &run->dev[i];
    done += d->t_done >= 0;
    bytes += d->up + d->down;
    if (d->estimate > 0)
      planned += (unsigned long long)d->estimate;
  }
  /* how far: devices done, or the data the planner expects, whichever is
   * further (a heal moves bytes long before a device is done) */
  double f = run->ndev ? (double)done / run->ndev : 0;
  if (planned && (double)bytes / (double)planned > f)
    f = (double)bytes / (double)planned;
  if (f > 0.99)
    f = 0.99;
  char b[32], eta[32] = "ETA --";
  human_bytes(bytes, b, sizeof b);
  double el = now - run->prog_t0;
  if (f > 0.01 && el > 0.5)
    snprintf(eta, sizeof eta, "ETA %.0f s", el * (1 - f) / f);
  char p[48] = "";
  if (planned) {
    char pb[32];
    human_bytes(planned, pb, sizeof pb);
    snprintf(p, sizeof p, " (plan %s)", pb);
  }
  printf("\r\033[K[progress] %d/%d devices done, %s%s, %.1f s %s, %s", done,
         run->ndev, b, p, t, simulated ? "simulated" : "elapsed", eta);
  fflush(stdout);
  run->prog_shown = 1;
}

void sc_progress_clear(sc_run_t *run) {
  if (run->prog_shown) {
    printf("\r\033[K");
    fflush(stdout);
    run->prog_shown = 0;
  }
}

void sc_progress_end(sc_run_t *run) {
  sc_progress_clear(run);
}
