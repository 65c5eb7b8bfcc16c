// How long this machine takes a CPU away from a thread that wants it all the time: a
// thread pinned to the CPU reads the monotonic clock in a loop and counts the gaps
// between two readings (interrupts, kernel threads such as kdamond, the hypervisor
// running something else on the virtual CPU). A server thread pinned there loses the same
// time, with its requests waiting. Usage: cpu-gaps CPU SECONDS
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: cpu-gaps CPU SECONDS\n"); return 2; }
    int cpu = atoi(argv[1]);
    double seconds = atof(argv[2]);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) { perror("sched_setaffinity"); return 1; }
    // Gaps longer than 0.1, 0.5, 1 and 2 ms, the longest, and the time lost in them.
    long long limits[4] = {100000, 500000, 1000000, 2000000};
    long counts[4] = {0, 0, 0, 0};
    long long longest = 0, lost = 0;
    long long start = now_ns(), last = start, end = start + (long long)(seconds * 1e9);
    for (;;) {
        long long t = now_ns(), gap = t - last;
        last = t;
        if (gap > limits[0]) {
            lost += gap;
            if (gap > longest) longest = gap;
            for (int i = 0; i < 4; i++) if (gap > limits[i]) counts[i]++;
        }
        if (t > end) break;
    }
    printf("cpu %d, %.0f s: gaps over 0.1 ms %ld, over 0.5 ms %ld, over 1 ms %ld, over 2 ms %ld; "
           "longest %.2f ms; lost %.1f ms per second\n", cpu, seconds, counts[0], counts[1], counts[2],
           counts[3], longest / 1e6, lost / 1e6 / seconds);
    return 0;
}
