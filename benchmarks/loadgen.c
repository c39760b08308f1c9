/* The benchmarks' load generator: one thread, non-blocking sockets, epoll.
 *
 * It is compiled at bench time by benchmarks/run.py with the system's cc
 * (benchmarks/loadgen.py is the same program in Python, used when there is no
 * compiler).  It only ever connects to the address it is given, which run.py
 * always makes 127.0.0.1, and every run is bounded in count and in time.
 *
 *   loadgen echo HOST PORT CONNS SIZE WARMUP_S DURATION_S MAX_ROUND_TRIPS
 *   loadgen http HOST PORT CONNS WARMUP_S DURATION_S MAX_ROUND_TRIPS
 *   loadgen idle HOST PORT CONNS SIZE HOLD_S
 *   loadgen echo-rate HOST PORT CONNS SIZE RATE WARMUP_S DURATION_S MAX_REQUESTS [spin|sleep]
 *   loadgen http-rate HOST PORT CONNS RATE WARMUP_S DURATION_S MAX_REQUESTS [spin|sleep]
 *
 * echo: closed loop.  Each connection sends SIZE bytes, waits until all SIZE
 *       have come back (checking every byte), and sends again.  Round trips
 *       completed during the first WARMUP_S seconds are not counted; then it
 *       counts for DURATION_S seconds or until MAX_ROUND_TRIPS, whichever
 *       comes first.  Once it stops it sends nothing more and drains the
 *       replies still in flight, so with WARMUP_S = 0 the server has handled
 *       exactly MAX_ROUND_TRIPS round trips (what the syscall count needs).
 * http: the same closed loop with an HTTP/1.1 keep-alive GET and a response
 *       delimited by Content-Length (wrk's fallback, and the warm-up).
 * idle: opens CONNS connections, does one echo round trip on each (so that
 *       the server has accepted it and parked its handler in a receive
 *       again), prints a JSON line, then holds them open until its standard
 *       input is closed or HOLD_S seconds pass.
 *
 * echo-rate, http-rate: open loop (benchmarks/latency.py).  Request n is due
 *       at t0 + n / RATE on connection n % CONNS and is sent then, whether or
 *       not earlier replies have come back (requests pipeline on a
 *       connection), so a slow server cannot slow the clock: no coordinated
 *       omission.  Its latency runs from that scheduled time to the arrival
 *       of the last byte of its reply, and goes into a histogram of 1 us
 *       buckets up to 1 s (larger values are counted apart; the maximum is
 *       exact).  Requests due in the first WARMUP_S seconds are sent but not
 *       recorded; then requests are due for DURATION_S seconds or until
 *       MAX_REQUESTS were recorded.  Every reply is awaited (at most 10 s
 *       after the last send) and checked (echo: every byte; http: a 200 with
 *       a Content-Length).  How late each send left against its schedule is
 *       recorded too (send_lag_us): if that is large, the generator, not the
 *       server, fell behind.  spin (the default) busy-polls epoll between
 *       sends so neither sending nor receiving waits for this process to be
 *       woken up; sleep waits in epoll_pwait2 with 1 ns timer slack.
 *
 * The result is one JSON line on standard output.  The exit status is 0 when
 * the run completed without a protocol error, 1 otherwise, 2 for bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 20000
#define HTTP_BUF 8192
#define MAX_EVENTS 1024

static const char HTTP_REQUEST[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: trio_uring-loadgen\r\n\r\n";

struct conn {
    int fd;
    int alive;
    int waiting; /* a request is in flight */
    size_t got;
    char *buf;
};

static struct conn *conns;
static int nconns;
static int http_mode;
static size_t msg_size;
static char *message;
static long errors;
static char first_error[200];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

static void note_error(const char *what, int conn_index) {
    if (errors++ == 0) {
        snprintf(first_error, sizeof first_error, "%s (connection %d, errno %d: %s)", what, conn_index, errno,
                 strerror(errno));
    }
}

static void raise_nofile(int want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)want) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)want ? rl.rlim_max : (rlim_t)want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* A blocking connect with a 5 s timeout; the socket is returned blocking. */
static int connect_one(const char *host, int port) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int send_request(struct conn *c) {
    const char *data = http_mode ? HTTP_REQUEST : message;
    size_t len = http_mode ? sizeof HTTP_REQUEST - 1 : msg_size;
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n != (ssize_t)len) return -1; /* a closed loop of small messages never fills the send buffer */
    c->waiting = 1;
    c->got = 0;
    return 0;
}

/* Length of a complete HTTP response at the start of buf, 0 if incomplete, -1 if malformed. */
static long http_response_length(const char *buf, size_t got) {
    const char *end = memmem(buf, got, "\r\n\r\n", 4);
    if (end == NULL) return got >= HTTP_BUF ? -1 : 0;
    if (got < 12 || memcmp(buf, "HTTP/1.1 200", 12) != 0) return -1;
    size_t header_len = (size_t)(end - buf) + 4;
    long body = -1;
    for (const char *p = buf; p < end; p++) {
        if ((p == buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            body = strtol(p + 15, NULL, 10);
            break;
        }
    }
    if (body < 0 || header_len + (size_t)body > HTTP_BUF) return -1;
    return got >= header_len + (size_t)body ? (long)(header_len + (size_t)body) : 0;
}

/* Read what is there; return 1 when the response is complete, 0 if not yet, -1 on error or EOF. */
static int read_response(struct conn *c) {
    size_t cap = http_mode ? HTTP_BUF : msg_size;
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->got, cap - c->got, 0);
        if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        if (n == 0) {
            errno = ECONNRESET;
            return -1;
        }
        c->got += (size_t)n;
        if (http_mode) {
            long len = http_response_length(c->buf, c->got);
            if (len < 0) {
                errno = EPROTO;
                return -1;
            }
            if (len > 0) return (size_t)len == c->got ? 1 : (errno = EPROTO, -1);
        } else if (c->got == msg_size) {
            if (memcmp(c->buf, message, msg_size) != 0) {
                errno = EILSEQ;
                return -1;
            }
            return 1;
        }
        if (c->got == cap) {
            errno = EPROTO;
            return -1;
        }
    }
}

static void kill_conn(struct conn *c, int epfd) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->alive = 0;
    c->waiting = 0;
}

static int open_all(const char *host, int port) {
    conns = calloc((size_t)nconns, sizeof *conns);
    if (conns == NULL) return -1;
    size_t cap = http_mode ? HTTP_BUF : msg_size;
    for (int i = 0; i < nconns; i++) {
        conns[i].buf = malloc(cap);
        conns[i].fd = connect_one(host, port);
        if (conns[i].fd < 0 || conns[i].buf == NULL) {
            note_error("connect", i);
            return -1;
        }
        conns[i].alive = 1;
    }
    return 0;
}

static int closed_loop(const char *host, int port, double warmup, double duration, long max_round_trips) {
    double t_start = now_s();
    if (open_all(host, port) < 0) return 1;
    double connect_s = now_s() - t_start;
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < nconns; i++) {
        fcntl(conns[i].fd, F_SETFL, fcntl(conns[i].fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(epfd, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    double t0 = now_s();
    double measure_at = t0 + warmup, end_at = measure_at + duration, hard_end = end_at + 10.0;
    double t_measure = 0, t_last = 0, cpu_measure = 0, cpu_last = 0, stop_at = 0;
    int measuring = warmup <= 0, stopping = 0, in_flight = 0, alive = nconns;
    long done = 0, warmup_done = 0;
    if (measuring) {
        t_measure = t0;
        cpu_measure = cpu_s();
    }
    for (int i = 0; i < nconns; i++) {
        if (max_round_trips > 0 && measuring && in_flight >= max_round_trips) break;
        if (send_request(&conns[i]) < 0) {
            note_error("send", i);
            kill_conn(&conns[i], epfd);
            alive--;
        } else {
            in_flight++;
        }
    }
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, 50);
        double now = now_s();
        if (!measuring && now >= measure_at) {
            measuring = 1;
            t_measure = now;
            cpu_measure = cpu_s();
        }
        for (int e = 0; e < n; e++) {
            int i = (int)evs[e].data.u32;
            struct conn *c = &conns[i];
            if (!c->alive) continue;
            int r = read_response(c);
            if (r == 0) continue;
            if (r < 0 || !c->waiting) {
                if (!stopping || c->waiting) note_error("receive", i);
                if (c->waiting) in_flight--;
                kill_conn(c, epfd);
                alive--;
                continue;
            }
            c->waiting = 0;
            in_flight--;
            if (measuring) {
                done++;
                t_last = now;
            } else {
                warmup_done++;
            }
            if (!stopping && measuring && max_round_trips > 0 && done + in_flight >= max_round_trips) {
                stopping = 1;
                stop_at = now;
            }
            if (!stopping) {
                if (send_request(c) < 0) {
                    note_error("send", i);
                    kill_conn(c, epfd);
                    alive--;
                } else {
                    in_flight++;
                }
            }
        }
        if (!stopping && measuring && now >= end_at) {
            stopping = 1;
            stop_at = now;
        }
        if (stopping && in_flight == 0) break;
        if (stopping && now > stop_at + 2.0) {
            errno = ETIMEDOUT;
            note_error("drain", -1);
            break;
        }
        if (alive == 0 || now > hard_end) {
            if (alive > 0) {
                errno = ETIMEDOUT;
                note_error("deadline", -1);
            }
            break;
        }
    }
    cpu_last = cpu_s();
    double elapsed = done > 0 ? t_last - t_measure : 0.0;
    for (int i = 0; i < nconns; i++)
        if (conns[i].alive) close(conns[i].fd);
    close(epfd);
    printf("{\"mode\": \"%s\", \"connections\": %d, \"round_trips\": %ld, \"warmup_round_trips\": %ld, "
           "\"elapsed_s\": %.6f, \"rate\": %.3f, \"cpu_s\": %.6f, \"cpu_fraction\": %.4f, \"connect_s\": %.6f, "
           "\"errors\": %ld, \"first_error\": \"%s\", \"stopped_by\": \"%s\"}\n",
           http_mode ? "http" : "echo", nconns, done, warmup_done, elapsed, elapsed > 0 ? (double)done / elapsed : 0.0,
           cpu_last - cpu_measure, elapsed > 0 ? (cpu_last - cpu_measure) / (now_s() - t_measure) : 0.0, connect_s,
           errors, first_error,
           (max_round_trips > 0 && done >= max_round_trips) ? "count" : (errors ? "error" : "time"));
    return errors ? 1 : 0;
}

static int idle(const char *host, int port, double hold) {
    double t0 = now_s();
    if (open_all(host, port) < 0) {
        printf("{\"mode\": \"idle\", \"ready\": false, \"errors\": %ld, \"first_error\": \"%s\"}\n", errors,
               first_error);
        return 1;
    }
    for (int i = 0; i < nconns; i++) {
        /* blocking sockets with 5 s timeouts: a round trip proves the server accepted it */
        if (send(conns[i].fd, message, msg_size, MSG_NOSIGNAL) != (ssize_t)msg_size) {
            note_error("send", i);
            break;
        }
        size_t got = 0;
        while (got < msg_size) {
            ssize_t n = recv(conns[i].fd, conns[i].buf + got, msg_size - got, 0);
            if (n <= 0) break;
            got += (size_t)n;
        }
        if (got != msg_size || memcmp(conns[i].buf, message, msg_size) != 0) {
            note_error("echo", i);
            break;
        }
    }
    printf("{\"mode\": \"idle\", \"ready\": %s, \"connections\": %d, \"connect_s\": %.6f, \"errors\": %ld, "
           "\"first_error\": \"%s\"}\n",
           errors ? "false" : "true", nconns, now_s() - t0, errors, first_error);
    fflush(stdout);
    if (errors == 0) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        char scratch[256];
        double deadline = now_s() + hold;
        while (now_s() < deadline) {
            int r = poll(&p, 1, 100);
            if (r > 0 && read(0, scratch, sizeof scratch) <= 0) break; /* standard input closed */
        }
    }
    for (int i = 0; i < nconns; i++) close(conns[i].fd);
    return errors ? 1 : 0;
}

/* ---------------------------------------------------------------- open loop */

static int usage(void);

#define HIST_US 1000000      /* 1 us buckets up to 1 s */
#define FIFO_CAP (1u << 16)  /* requests in flight on one connection */

typedef struct {
    uint32_t *counts; /* counts[i]: values in [i, i + 1) us */
    uint64_t total, over; /* over: values >= 1 s */
    int64_t max_ns;
    double sum_ns;
} hist_t;

static void hist_init(hist_t *h) {
    memset(h, 0, sizeof *h);
    h->counts = calloc(HIST_US, sizeof *h->counts);
}

static void hist_add(hist_t *h, int64_t ns) {
    if (ns < 0) ns = 0;
    int64_t us = ns / 1000;
    if (us < HIST_US)
        h->counts[us]++;
    else
        h->over++;
    h->total++;
    h->sum_ns += (double)ns;
    if (ns > h->max_ns) h->max_ns = ns;
}

/* The value at quantile q, in us: the upper edge of its 1 us bucket (the
 * exact maximum when it falls above 1 s), as HdrHistogram's "highest
 * equivalent value". */
static double hist_quantile(const hist_t *h, double q) {
    if (h->total == 0) return 0.0;
    uint64_t rank = (uint64_t)(q * (double)h->total + 0.5);
    if (rank < 1) rank = 1;
    if (rank > h->total) rank = h->total;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_US; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            double edge = (double)(i + 1);
            double max_us = (double)h->max_ns / 1000.0;
            return edge < max_us ? edge : max_us;
        }
    }
    return (double)h->max_ns / 1000.0;
}

static void hist_json(const hist_t *h, const char *name) {
    printf("\"%s\": {\"count\": %llu, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p99.9\": %.1f, "
           "\"p99.99\": %.1f, \"max\": %.1f, \"mean\": %.1f, \"over_1s\": %llu}",
           name, (unsigned long long)h->total, hist_quantile(h, 0.50), hist_quantile(h, 0.90), hist_quantile(h, 0.99),
           hist_quantile(h, 0.999), hist_quantile(h, 0.9999), (double)h->max_ns / 1000.0,
           h->total ? h->sum_ns / (double)h->total / 1000.0 : 0.0, (unsigned long long)h->over);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct oconn {
    int fd;
    int want_out; /* EPOLLOUT is armed */
    int64_t *due;  /* FIFO of scheduled send times; < 0: not recorded (warm-up) */
    uint32_t head, tail;
    char *out; /* bytes not yet taken by send() */
    size_t out_len, out_cap;
    char *in; /* http: response bytes not yet parsed */
    size_t in_len;
    size_t echo_pos; /* echo: offset in the message of the next byte expected */
};

/* Send what is buffered; arm EPOLLOUT while something is left. */
static int oflush(struct oconn *c, int epfd, int index) {
    while (c->out_len > 0) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return -1;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    int want = c->out_len > 0;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = (uint32_t)index};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }
    return 0;
}

static int open_loop(const char *host, int port, double rate, double warmup, double duration, long max_requests,
                     const char *wait) {
    int spin = strcmp(wait, "spin") == 0;
    if (!(rate > 0) || (!spin && strcmp(wait, "sleep") != 0)) return usage();
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* sleep mode: wake on time, not up to 50 us late */
    hist_t lat, lag;
    hist_init(&lat);
    hist_init(&lag);
    struct oconn *oc = calloc((size_t)nconns, sizeof *oc);
    if (open_all(host, port) < 0 || oc == NULL || lat.counts == NULL || lag.counts == NULL) {
        printf("{\"mode\": \"%s-rate\", \"errors\": %ld, \"first_error\": \"%s\"}\n", http_mode ? "http" : "echo",
               errors ? errors : 1, first_error);
        return 1;
    }
    const char *req = http_mode ? HTTP_REQUEST : message;
    size_t req_len = http_mode ? sizeof HTTP_REQUEST - 1 : msg_size;
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < nconns; i++) {
        oc[i].fd = conns[i].fd;
        oc[i].due = malloc(FIFO_CAP * sizeof *oc[i].due);
        oc[i].out_cap = 64 * req_len;
        oc[i].out = malloc(oc[i].out_cap);
        oc[i].in = malloc(HTTP_BUF);
        fcntl(oc[i].fd, F_SETFL, fcntl(oc[i].fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(epfd, EPOLL_CTL_ADD, oc[i].fd, &ev);
    }
    double interval_ns = 1e9 / rate;
    int64_t t0 = now_ns() + 1000000; /* the first request is due 1 ms from now */
    int64_t measure_at = t0 + (int64_t)(warmup * 1e9), end_at = measure_at + (int64_t)(duration * 1e9);
    int64_t drain_deadline = 0, last_reply = 0, first_measured = -1, last_measured_due = 0;
    long next = 0, recorded_sent = 0, warmup_sent = 0, in_flight = 0, replies = 0;
    int sending = 1;
    double cpu0 = cpu_s();
    struct epoll_event evs[MAX_EVENTS];
    char rbuf[65536];
    while (!errors) {
        int64_t now = now_ns();
        while (sending) {
            int64_t due = t0 + (int64_t)((double)next * interval_ns);
            if (due > now) break;
            if (due >= end_at || (max_requests > 0 && recorded_sent >= max_requests)) {
                sending = 0;
                drain_deadline = now + 10000000000LL;
                break;
            }
            struct oconn *c = &oc[next % nconns];
            if (c->tail - c->head >= FIFO_CAP) {
                errno = ENOBUFS;
                note_error("the server fell more than 65536 requests behind on a connection", (int)(next % nconns));
                break;
            }
            int recorded = due >= measure_at;
            c->due[c->tail++ % FIFO_CAP] = recorded ? due : -1;
            if (recorded) {
                recorded_sent++;
                if (first_measured < 0) first_measured = due;
                last_measured_due = due;
            } else {
                warmup_sent++;
            }
            if (c->out_len + req_len > c->out_cap) {
                c->out_cap *= 2;
                c->out = realloc(c->out, c->out_cap);
            }
            memcpy(c->out + c->out_len, req, req_len);
            c->out_len += req_len;
            in_flight++;
            int was_empty = c->out_len == req_len;
            if (was_empty && oflush(c, epfd, (int)(next % nconns)) < 0) {
                note_error("send", (int)(next % nconns));
                break;
            }
            if (recorded) hist_add(&lag, now_ns() - due);
            next++;
        }
        if (errors) break;
        if (!sending && in_flight == 0) break;
        if (!sending && now > drain_deadline) {
            errno = ETIMEDOUT;
            note_error("replies still missing 10 s after the last request", -1);
            break;
        }
        int n;
        if (spin) {
            n = epoll_wait(epfd, evs, MAX_EVENTS, 0);
        } else {
            int64_t left = (sending ? t0 + (int64_t)((double)next * interval_ns) : now + 1000000) - now;
            if (left < 0) left = 0;
            struct timespec ts = {left / 1000000000, left % 1000000000};
            n = epoll_pwait2(epfd, evs, MAX_EVENTS, &ts, NULL);
        }
        for (int e = 0; e < n && !errors; e++) {
            int i = (int)evs[e].data.u32;
            struct oconn *c = &oc[i];
            if (evs[e].events & EPOLLOUT) {
                if (oflush(c, epfd, i) < 0) {
                    note_error("send", i);
                    break;
                }
            }
            if (!(evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            for (;;) {
                ssize_t got = http_mode ? recv(c->fd, c->in + c->in_len, HTTP_BUF - c->in_len, 0)
                                        : recv(c->fd, rbuf, sizeof rbuf, 0);
                if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (got <= 0) {
                    if (got == 0) errno = ECONNRESET;
                    note_error("receive", i);
                    break;
                }
                int64_t t = now_ns();
                long completed = 0;
                if (http_mode) {
                    c->in_len += (size_t)got;
                    for (;;) {
                        long len = http_response_length(c->in, c->in_len);
                        if (len < 0) {
                            errno = EPROTO;
                            note_error("malformed response", i);
                            break;
                        }
                        if (len == 0) break;
                        memmove(c->in, c->in + len, c->in_len - (size_t)len);
                        c->in_len -= (size_t)len;
                        completed++;
                    }
                } else {
                    for (ssize_t b = 0; b < got; b++) {
                        if (rbuf[b] != message[c->echo_pos]) {
                            errno = EILSEQ;
                            note_error("echo differs", i);
                            break;
                        }
                        if (++c->echo_pos == msg_size) {
                            c->echo_pos = 0;
                            completed++;
                        }
                    }
                }
                if (errors) break;
                for (long r = 0; r < completed; r++) {
                    if (c->head == c->tail) {
                        errno = EPROTO;
                        note_error("a reply to no request", i);
                        break;
                    }
                    int64_t due = c->due[c->head++ % FIFO_CAP];
                    in_flight--;
                    if (due >= 0) {
                        hist_add(&lat, t - due);
                        replies++;
                        last_reply = t;
                    }
                }
                if (errors || got < (ssize_t)(http_mode ? 1 : (ssize_t)sizeof rbuf)) break;
            }
        }
    }
    double cpu = cpu_s() - cpu0;
    double span = first_measured >= 0 ? (double)(last_measured_due - first_measured) / 1e9 : 0.0;
    printf("{\"mode\": \"%s-rate\", \"connections\": %d, \"wait\": \"%s\", \"target_rate\": %.3f, "
           "\"requests\": %ld, \"replies\": %ld, \"warmup_requests\": %ld, \"sent_rate\": %.3f, "
           "\"last_reply_after_s\": %.6f, \"cpu_s\": %.6f, ",
           http_mode ? "http" : "echo", nconns, spin ? "spin" : "sleep", rate, recorded_sent, replies, warmup_sent,
           span > 0 ? (double)(recorded_sent - 1) / span : 0.0,
           last_reply && first_measured >= 0 ? (double)(last_reply - first_measured) / 1e9 : 0.0, cpu);
    hist_json(&lat, "latency_us");
    printf(", ");
    hist_json(&lag, "send_lag_us");
    printf(", \"errors\": %ld, \"first_error\": \"%s\"}\n", errors, first_error);
    return errors ? 1 : 0;
}

static int usage(void) {
    fprintf(stderr,
            "usage: loadgen echo HOST PORT CONNS SIZE WARMUP_S DURATION_S MAX_ROUND_TRIPS\n"
            "       loadgen http HOST PORT CONNS WARMUP_S DURATION_S MAX_ROUND_TRIPS\n"
            "       loadgen idle HOST PORT CONNS SIZE HOLD_S\n"
            "       loadgen echo-rate HOST PORT CONNS SIZE RATE WARMUP_S DURATION_S MAX_REQUESTS [spin|sleep]\n"
            "       loadgen http-rate HOST PORT CONNS RATE WARMUP_S DURATION_S MAX_REQUESTS [spin|sleep]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 5) return usage();
    const char *mode = argv[1], *host = argv[2];
    int port = atoi(argv[3]);
    nconns = atoi(argv[4]);
    if (port <= 0 || nconns <= 0 || nconns > MAX_CONNS) return usage();
    raise_nofile(nconns + 64);
    if (strcmp(mode, "http-rate") == 0) {
        if (argc != 9 && argc != 10) return usage();
        http_mode = 1;
        return open_loop(host, port, atof(argv[5]), atof(argv[6]), atof(argv[7]), atol(argv[8]),
                         argc == 10 ? argv[9] : "spin");
    }
    if (strcmp(mode, "http") == 0) {
        if (argc != 8) return usage();
        http_mode = 1;
        return closed_loop(host, port, atof(argv[5]), atof(argv[6]), atol(argv[7]));
    }
    if (argc < 7) return usage();
    msg_size = (size_t)atol(argv[5]);
    if (msg_size == 0 || msg_size > 65536) return usage();
    message = malloc(msg_size);
    for (size_t i = 0; i < msg_size; i++) message[i] = (char)('a' + i % 26);
    if (strcmp(mode, "echo") == 0 && argc == 9) return closed_loop(host, port, atof(argv[6]), atof(argv[7]), atol(argv[8]));
    if (strcmp(mode, "echo-rate") == 0 && (argc == 10 || argc == 11))
        return open_loop(host, port, atof(argv[6]), atof(argv[7]), atof(argv[8]), atol(argv[9]),
                         argc == 11 ? argv[10] : "spin");
    if (strcmp(mode, "idle") == 0 && argc == 7) return idle(host, port, atof(argv[6]));
    return usage();
}
