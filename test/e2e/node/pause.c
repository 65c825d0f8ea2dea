/* The pod sandbox ("pause") process of `npm run test:node`: holds the pod's namespaces, reaps
 * orphans, exits on SIGINT/SIGTERM. No public registry is reachable here, so the test builds this
 * image itself (test/e2e/node/images.sh) instead of pulling registry.k8s.io/pause. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, 0, WNOHANG) > 0) {
  }
}

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

int main(void) {
  signal(SIGINT, stop);
  signal(SIGTERM, stop);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
