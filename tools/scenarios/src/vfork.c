#include <unistd.h>
#include <sys/wait.h>
#include <sys/syscall.h>
int main(void){ pid_t p = vfork(); if (p == 0) { _exit(0); } int st; waitpid(p, &st, 0); return 0; }
