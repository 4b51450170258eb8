/* otalab scenario: a scenario file (fixtures/scenarios/NAME.json,
 * docs/SCENARIOS.md) run against real otalab-server and otalab-device processes
 * on loopback.
 *
 * Split: scenario_load.c reads and checks the file into sc_run_t (the JSON
 * stays owned by the run), scenario_run.c starts and watches the processes
 * (temp dir, keys, server, registration, one device process per device behind a
 * counting UDP relay, the event stream, actions, polling), scenario_check.c
 * decides the expectations and prints the report. A future `--fleet` mode
 * replaces the per-device processes (sc_devices_start/sc_devices_stop) and
 * keeps the rest. */
#ifndef OTALAB_CLI_SCENARIO_H
#define OTALAB_CLI_SCENARIO_H

#include <jansson.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/types.h>

#define SC_MAX_DEVICES 64
#define SC_MAX_JOBS 32
#define SC_MAX_EVENTS 1024

/* One OTA job as GET /v1/devices/:id showed it last. */
typedef struct {
  int id;
  char file[96];
  char f;         /* module function letter */
  unsigned n, v;  /* index, version */
  char state[16]; /* QUEUED, SENDING, REBOOTING, DONE, FAILED */
  char result[8]; /* "ok", "failed", "" (not finished / cancelled) */
  char why[160];
  unsigned total; /* module bytes */
  unsigned sent;  /* bytes sent so far (GET "sent") */
  long total_ms;
  int restored;        /* a restarted server restored it from DATA/jobs */
  int killed;          /* it was SENDING when the server was killed */
  unsigned killed_pct; /* how much of it was sent then (%) */
} sc_job_t;

typedef struct {
  char name[64];
  char data[160];
  double t;        /* seconds since the fleet started */
  int from_device; /* 1: seen in the device log, 0: on the event stream */
  int dev;         /* index into sc_run_t.dev, -1: none of ours */
} sc_event_t;

typedef struct {
  /* from the file */
  char name[64];    /* scenario name ("d1", "fleet-3" for groups) */
  char group[64];   /* the devices entry's id (same as name without count) */
  char hex[25];     /* device id */
  char release[32]; /* provisioned release */
  uint32_t product; /* 0 developer */
  char app[512];    /* provisioned app file, "" none */
  json_t *expect;   /* borrowed from the spec */
  /* processes */
  pid_t pid;
  int exited, exit_code, starts;
  /* relay: dev_fd faces the device, srv_fd is connected to the server */
  int dev_fd, srv_fd, have_peer;
  struct sockaddr_in peer;
  uint16_t relay_port;
  uint64_t up, down; /* UDP payload bytes device->server, server->device */
  /* what the server shows */
  int connected, described;
  char sfv[32]; /* system_firmware_version, "" unknown */
  char first_sfv[32];
  int safe_mode, app_ok, ever_safe;
  json_t *first_describe; /* owned */
  sc_job_t jobs[SC_MAX_JOBS];
  int njobs;
  double t_done; /* first time all its expectations held, -1 never */
  char hardfault[200];
  long log_off; /* how far the device log was scanned for events */
  /* estimate (planner) */
  long long estimate; /* wire bytes, -1 none */
  char est_note[160];
  /* the server's own count (GET /v1/devices/:id data_usage), -1 unknown */
  long long srv_bytes, srv_up, srv_down;
  /* sequencing: an action on this device waits for a poll that started after
   * the device's previous action completed (act_t), for that action's jobs
   * (act_jobs) to finish, and, when it rebooted the device (a job ended ok,
   * a power cycle), for a Hello after it (hellos > act_hellos) */
  double act_t;  /* sc_now() when the previous action completed, -1 none */
  double poll_t; /* sc_now() when the last successful poll started, -1 */
  unsigned hellos, act_hellos;
  int act_reboot; /* the action restarted the device itself */
  int act_jobs[SC_MAX_JOBS], act_njobs;
} sc_dev_t;

typedef struct {
  /* options */
  const char *file;
  unsigned seed;
  int json, quiet;
  const char *keep;
  const char *bin_dir, *fixtures;
  /* spec */
  json_t *spec; /* owned */
  char name[128];
  double timeout_s, within_s;
  /* "time_scale" K (default 1): real mode runs otalab-device with
   * --time-scale K and counts time (at, timeout_s, within_s, the report) in
   * simulated seconds = wall seconds * K; virtual mode is simulated anyway */
  double time_scale;
  int virt; /* --virtual */
  /* runtime */
  char dir[512];
  char self[512], server_bin[512], device_bin[512], fix[512];
  char token[40];
  int coap_port, http_port;
  char url[64];
  pid_t server_pid;
  int server_up, server_starts;
  int sse_fd;
  char sse_buf[8192];
  size_t sse_len;
  int sse_ok;
  sc_dev_t dev[SC_MAX_DEVICES];
  int ndev;
  size_t next_action;
  double t0_mono, t_end, t_all_done;
  sc_event_t ev[SC_MAX_EVENTS];
  int nev;
  int poll_now; /* a progress event came: poll and check the actions now */
  char fail_setup[256]; /* why the run could not start, "" ok */
  char sanitizer[256];  /* a sanitizer report in a process log, "" none */
  /* progress line (scenario_progress.c) */
  int prog_tty;              /* 0 unknown, 1 shown, -1 never */
  int prog_shown;            /* a line is on screen */
  double prog_t0, prog_last; /* wall clock: start, last draw */
} sc_run_t;

/* Read and check FILE into run->spec and run->dev (names, releases, groups
 * expanded). 0, or CLI_EXIT_USAGE with the reason printed on stderr. */
int sc_load(sc_run_t *run);
/* Run the scenario: returns when every expectation holds and the actions
 * are done (after a short settle), or at timeout_s. 0, or 1 when the setup
 * failed (run->fail_setup says why). Processes are always stopped. */
int sc_run(sc_run_t *run);
/* Evaluate the expectations, print the report (human or --json); returns
 * CLI_EXIT_OK when every expectation holds, CLI_EXIT_FAIL otherwise. */
int sc_report(sc_run_t *run);
/* True when every expectation of dev holds now (no output). */
int sc_dev_ok(const sc_run_t *run, const sc_dev_t *d);
/* Seconds since the fleet started (monotonic, wall clock). */
double sc_now(const sc_run_t *run);
/* The same in simulated seconds (sc_now() * time_scale): what timeout_s,
 * within_s, a numeric "at" and the report's times count. */
double sc_sim(const sc_run_t *run);
/* "ota_progress:P" as an action's "at": P (1..100) into *pct; 0 ok, -1 not
 * that form. */
int sc_at_progress(const char *at, unsigned *pct);
/* --virtual (scenario_virtual.c): the same run in-process through the
 * virtual-time simulation (core/vsim); 0, or 1 when the setup failed. */
int sc_run_virtual(sc_run_t *run);
/* 1 when virtual mode can run the scenario, else 0 with why. */
int sc_virtual_supported(const sc_run_t *run, char *why, size_t cap);
/* 1 when the file's "modes" (default both) lists mode ("real", "virtual"). */
int sc_mode_ok(const sc_run_t *run, const char *mode);
/* Progress line (scenario_progress.c): on a TTY, unless --quiet or --json,
 * one line updated in place (at most 10 times a second): devices done/total,
 * bytes (vs the planner's estimates), t seconds (virtual: simulated, else
 * elapsed), ETA (wall clock). sc_progress_clear() erases it (call before
 * printing a log line); sc_progress_end() erases it for good. */
void sc_progress(sc_run_t *run, double t, int simulated);
void sc_progress_clear(sc_run_t *run);
void sc_progress_end(sc_run_t *run);
/* Free everything the run owns; safe twice. */
void sc_free(sc_run_t *run);

#endif
