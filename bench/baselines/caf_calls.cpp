// caf_calls.cpp -- the CAF baseline for bench/calls: the same workload on
// CAF 0.17 (Debian's libcaf-dev), 2 scheduler threads.
//
// Usage: bench_caf_calls OBJECTS REQUESTS_PER_OBJECT
// Prints one line: "caf <objects> <requests> <seconds> <p50_us> <p99_us>".
#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace caf;
using clk = std::chrono::steady_clock;

static behavior server(event_based_actor *) {
  return {[](int x) { return x + 1; }};
}

// One client: `left` sequential requests, each sent when the previous
// reply arrives; latencies recorded into its own vector.
static void next(event_based_actor *self, actor srv, int left, std::vector<int64_t> *lat,
                 actor waiter) {
  if (left == 0) {
    self->send(waiter, 1);
    self->quit();
    return;
  }
  auto t0 = clk::now();
  self->request(srv, infinite, left).then([=](int) {
    lat->push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now() - t0).count());
    next(self, srv, left - 1, lat, waiter);
  });
}

int main(int argc, char **argv) {
  int objects = argc > 1 ? atoi(argv[1]) : 1000;
  int per = argc > 2 ? atoi(argv[2]) : 1000;
  actor_system_config cfg;
  cfg.set("scheduler.max-threads", 2);
  actor_system sys{cfg};
  std::vector<actor> servers;
  for (int i = 0; i < objects; i++)
    servers.push_back(sys.spawn(server));
  std::vector<std::vector<int64_t>> lats(objects);
  for (auto &l : lats)
    l.reserve(per);
  scoped_actor waiter{sys};
  auto t0 = clk::now();
  for (int i = 0; i < objects; i++) {
    actor srv = servers[i];
    std::vector<int64_t> *lat = &lats[i];
    actor w = waiter;
    sys.spawn([=](event_based_actor *self) { next(self, srv, per, lat, w); });
  }
  for (int i = 0; i < objects; i++)
    waiter->receive([](int) {});
  double secs = std::chrono::duration<double>(clk::now() - t0).count();
  std::vector<int64_t> all;
  for (auto &l : lats)
    all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  double p50 = all[all.size() / 2] / 1000.0, p99 = all[all.size() * 99 / 100] / 1000.0;
  printf("caf %d %d %.6f %.1f %.1f\n", objects, per, secs, p50, p99);
  for (auto &s : servers)
    anon_send_exit(s, exit_reason::user_shutdown);
  return 0;
}
