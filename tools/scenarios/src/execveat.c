#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void){ int d = open("/usr/bin", O_PATH|O_DIRECTORY); char *argv[] = {"true", "from-execveat", NULL}; char *envp[] = {NULL};
  syscall(SYS_execveat, d, "true", argv, envp, 0); return 1; }
