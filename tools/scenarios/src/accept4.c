#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdlib.h>
int main(int argc, char **argv){ int port = atoi(argv[1]); int s = socket(AF_INET, SOCK_STREAM, 0); int one = 1; setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(port); a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, (struct sockaddr*)&a, sizeof a); listen(s, 1);
  int c = socket(AF_INET, SOCK_STREAM, 0); connect(c, (struct sockaddr*)&a, sizeof a);
  struct sockaddr_in peer; socklen_t l = sizeof peer; int f = accept4(s, (struct sockaddr*)&peer, &l, SOCK_CLOEXEC); close(f); close(c); close(s); return 0; }
