#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
static int child(void *arg){ (void)arg; return 0; }
int main(void){ char *stack = malloc(65536); pid_t p = clone(child, stack + 65536, SIGCHLD, NULL); int st; waitpid(p, &st, 0); return 0; }
