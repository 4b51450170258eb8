/* Baseline for the OTA throughput benchmark: plain UDP over loopback, one
 * datagram of up to 512 payload bytes at a time, each acknowledged before the
 * next is sent (stop-and-wait, like a 1-chunk window), no encryption.
 * Usage: bench_udp [--payload N] FILE...   prints seconds and MB/s.
 * A forked receiver acknowledges every datagram by sequence number and
 * answers the final FIN with the byte count and a checksum it computed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HDR 4
#define MAXPL 1400
#define FIN 0xFFFFFFFFu

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}
static void wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
/* FNV-1a over the payload stream, so the receiver proves it got the bytes. */
static uint32_t fnv(uint32_t h, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 16777619u;
  return h;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Receiver: ack each in-order datagram; duplicates are re-acked only. */
static void receiver(int fd) {
  uint8_t buf[HDR + MAXPL];
  uint32_t expect = 0, h = 2166136261u, total = 0;
  for (;;) {
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    if (n < HDR)
      continue;
    uint32_t seq = rd32(buf);
    uint8_t ack[12];
    wr32(ack, seq);
    size_t alen = HDR;
    if (seq == FIN) {
      wr32(ack + 4, total);
      wr32(ack + 8, h);
      alen = 12;
    } else if (seq == expect) {
      h = fnv(h, buf + HDR, (size_t)n - HDR);
      total += (uint32_t)(n - HDR);
      expect++;
    }
    sendto(fd, ack, alen, 0, (struct sockaddr *)&from, fl);
    if (seq == FIN)
      _exit(0);
  }
}

static uint8_t *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = n > 0 ? malloc((size_t)n) : NULL;
  if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
    free(p);
    p = NULL;
  }
  fclose(f);
  *len = p ? (size_t)n : 0;
  return p;
}

/* Send one datagram and wait for the ack of `seq`; retransmit after 200 ms. */
static int exchange(int fd, const uint8_t *dg, size_t len, uint32_t seq,
                    uint8_t *ack, size_t *alen, unsigned *retx) {
  for (int tries = 0; tries < 25; tries++) {
    if (send(fd, dg, len, 0) != (ssize_t)len)
      return -1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, 200) > 0) {
      ssize_t n = recv(fd, ack, 12, 0);
      if (n >= HDR && rd32(ack) == seq) {
        *alen = (size_t)n;
        return 0;
      }
    }
    (*retx)++;
  }
  return -1;
}

int main(int argc, char **argv) {
  size_t pl = 512;
  int i = 1;
  if (argc > 2 && !strcmp(argv[1], "--payload")) {
    pl = (size_t)atoi(argv[2]);
    i = 3;
  }
  if (i >= argc || pl == 0 || pl > MAXPL) {
    fprintf(stderr, "usage: bench_udp [--payload N<=%d] FILE...\n", MAXPL);
    return 2;
  }
  int rfd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (rfd < 0 || bind(rfd, (struct sockaddr *)&a, al) ||
      getsockname(rfd, (struct sockaddr *)&a, &al)) {
    perror("receiver socket");
    return 1;
  }
  pid_t kid = fork();
  if (kid == 0)
    receiver(rfd);
  close(rfd);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, al)) {
    perror("sender socket");
    kill(kid, SIGTERM);
    return 1;
  }

  size_t nfiles = (size_t)(argc - i), total = 0;
  uint8_t **files = calloc(nfiles, sizeof *files);
  size_t *lens = calloc(nfiles, sizeof *lens);
  for (size_t f = 0; f < nfiles; f++) {
    if (!(files[f] = slurp(argv[i + (int)f], &lens[f]))) {
      fprintf(stderr, "bench_udp: cannot read %s\n", argv[i + (int)f]);
      kill(kid, SIGTERM);
      return 1;
    }
    total += lens[f];
  }

  uint8_t dg[HDR + MAXPL], ack[12];
  size_t alen;
  uint32_t seq = 0, h = 2166136261u;
  unsigned retx = 0, datagrams = 0;
  int rc = 0;
  double t0 = now_s();
  for (size_t f = 0; f < nfiles && !rc; f++)
    for (size_t off = 0; off < lens[f] && !rc; off += pl) {
      size_t n = lens[f] - off < pl ? lens[f] - off : pl;
      wr32(dg, seq);
      memcpy(dg + HDR, files[f] + off, n);
      h = fnv(h, files[f] + off, n);
      rc = exchange(fd, dg, HDR + n, seq++, ack, &alen, &retx);
      datagrams++;
    }
  wr32(dg, FIN);
  if (!rc)
    rc = exchange(fd, dg, HDR, FIN, ack, &alen, &retx);
  double dt = now_s() - t0;
  int st = 0;
  waitpid(kid, &st, 0);
  if (rc || alen != 12 || rd32(ack + 4) != total || rd32(ack + 8) != h) {
    fprintf(stderr,
            "bench_udp: transfer failed (rc %d, receiver got %u of "
            "%zu bytes)\n",
            rc, alen == 12 ? rd32(ack + 4) : 0, total);
    return 1;
  }
  printf("bytes %zu datagrams %u payload %zu retransmits %u seconds %.6f "
         "MB/s %.3f\n",
         total, datagrams, pl, retx, dt, (double)total / dt / 1e6);
  for (size_t f = 0; f < nfiles; f++)
    free(files[f]);
  free(files);
  free(lens);
  return 0;
}
