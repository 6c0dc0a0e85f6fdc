// The connection loop of the HTTP transport (serve/http.h): one thread, epoll, level
// triggered, non-blocking sockets. A connection is Reading (parsing its next request,
// under the header/body/idle deadlines), Handling (its request is on the pool; bytes
// that follow are buffered: pipelining), Writing (its answer, under write_timeout) or
// Draining (answered with "Connection: close": read and discarded until the client
// closes, so that closing does not reset the connection before the answer is read).
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "serve/http.h"
#include "util/error.h"

namespace bertune::serve::http {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kReadAhead = 1 << 20;  // bytes buffered behind a request being handled
constexpr size_t kRejecting = 64;       // connections over the cap being told 503 at once
constexpr auto kDrain = std::chrono::seconds(2);
constexpr auto kSweep = std::chrono::milliseconds(50);
constexpr auto kAcceptPause = std::chrono::milliseconds(100);  // out of file descriptors

enum class State { Reading, Handling, Writing, Draining };

struct Conn {
  int fd = -1;
  uint64_t id = 0;
  State state = State::Reading;
  Stage stage = Stage::Empty;
  Clock::time_point since;  // of the stage (Reading), of the answer (Writing), of the drain
  std::string in, out;
  size_t out_done = 0;
  std::string path;  // of the request being read
  bool peer_eof = false, close_after = false, continue_sent = false, head_only = false, keep_alive = true;
  bool over_cap = false;  // accepted beyond max_connections, only to be told 503
  uint32_t events = 0;    // the epoll interest set now
};

struct Job {
  int fd;
  uint64_t id;
  Request request;
};

struct Done {
  int fd;
  uint64_t id;
  Response response;
};

int listen_socket(const std::string& host, int port, int& bound_port) {
  const std::string where = "cannot listen on " + host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0)
    throw Error(where + ": " + gai_strerror(rc) + " (--host)");
  int err = 0;
  for (addrinfo* a = found; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    const int one = 1;  // rebinding a port in TIME_WAIT; no SO_REUSEPORT: a port in use is refused
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
      bound_port = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                                    : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
      freeaddrinfo(found);
      return fd;
    }
    err = errno;
    close(fd);
  }
  freeaddrinfo(found);
  if (err == EADDRINUSE) throw Error(where + ": port " + std::to_string(port) + " is in use");
  if (err == EACCES) throw Error(where + ": permission denied (ports below 1024 need privileges)");
  throw Error(where + ": " + std::strerror(err));
}

// Room for every connection the cap allows, plus the listener, the model's files and a margin.
void raise_fd_limit(int max_connections) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  const rlim_t need = static_cast<rlim_t>(max_connections) + kRejecting + 64;
  if (lim.rlim_cur >= need) return;
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < need)
    throw Error("--max-connections " + std::to_string(max_connections) + ": needs " + std::to_string(need) +
                " open files, the limit is " + std::to_string(lim.rlim_max) + " (ulimit -n)");
  lim.rlim_cur = need;
  setrlimit(RLIMIT_NOFILE, &lim);
}

}  // namespace

struct Server::Loop {
  ServerOptions o;
  Hooks hooks;
  int listen_fd = -1, epoll_fd = -1, wake_fd = -1, port = 0;
  std::unordered_map<int, Conn> conns;
  size_t counted = 0, rejecting = 0;  // connections within the cap; beyond it
  uint64_t next_id = 1;
  bool stopping = false, accept_paused = false;
  Clock::time_point accept_resume, last_sweep;
  std::atomic<bool> stop_requested{false};
  // The handler pool.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job> jobs;
  std::deque<Done> done;
  bool pool_stop = false;
  std::vector<std::thread> threads;

  Loop(ServerOptions options, Hooks h) : o(std::move(options)), hooks(std::move(h)) {}
  ~Loop();
  void open();
  void run();
  void worker();
  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd, &one, sizeof one);
  }
  void watch(Conn& c);
  void accept_all();
  void on_event(Conn& c, uint32_t events);
  void read_some(Conn& c);
  void advance(Conn& c);
  void respond(Conn& c, const Response& r);
  void flush(Conn& c);
  void drain(Conn& c);
  void drop(Conn& c);
  void on_answers();
  void begin_stop();
  void sweep(Clock::time_point now);
  std::chrono::milliseconds timeout_of(const Conn& c) const;
};

void Server::Loop::open() {
  raise_fd_limit(o.max_connections);
  listen_fd = listen_socket(o.host, o.port, port);
  epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd < 0 || wake_fd < 0) throw Error(std::string("epoll/eventfd: ") + std::strerror(errno));
  for (int fd : {listen_fd, wake_fd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
  }
  for (int i = 0; i < o.handler_threads; ++i) threads.emplace_back([this] { worker(); });
}

Server::Loop::~Loop() {
  {
    std::lock_guard lock(mu);
    pool_stop = true;
  }
  cv.notify_all();
  for (auto& t : threads) t.join();
  for (auto& [fd, c] : conns) close(fd);
  for (int fd : {listen_fd, epoll_fd, wake_fd})
    if (fd >= 0) close(fd);
}

// A pool thread: runs the handler, hands the answer to the loop.
void Server::Loop::worker() {
  for (;;) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return pool_stop || !jobs.empty(); });
    if (jobs.empty()) return;
    Job job = std::move(jobs.front());
    jobs.pop_front();
    lock.unlock();
    Response r;
    try {
      r = hooks.handle(job.request);
    } catch (const std::exception& e) {
      r = hooks.refuse({500, "internal", e.what()}, job.request.path);
    }
    lock.lock();
    done.push_back({job.fd, job.id, std::move(r)});
    lock.unlock();
    wake();
  }
}

void Server::Loop::watch(Conn& c) {
  const uint32_t in = EPOLLIN, out = EPOLLOUT, none = 0;
  const bool room = !c.peer_eof && c.in.size() < kReadAhead;
  uint32_t want = 0;
  switch (c.state) {
    case State::Reading: want = (c.peer_eof ? none : in) | (c.out.empty() ? none : out); break;
    case State::Handling: want = room ? in : none; break;
    case State::Writing: want = out | (room ? in : none); break;
    case State::Draining: want = c.peer_eof ? none : in; break;
  }
  if (want == c.events) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.fd = c.fd;
  epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.fd, &ev);
  c.events = want;
}

void Server::Loop::accept_all() {
  while (!stopping) {
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);  // retried after a pause
        accept_paused = true;
        accept_resume = Clock::now() + kAcceptPause;
      }
      return;  // EAGAIN, or a connection that died in the backlog
    }
    const bool over = counted >= static_cast<size_t>(o.max_connections);
    const Refusal full{503, "too_many_connections",
                       "the server has " + std::to_string(counted) + " connections open, the limit is " +
                           std::to_string(o.max_connections) + " (--max-connections); retry later"};
    if (over && rejecting >= kRejecting) {
      hooks.refuse(full, "");  // counted, not answered: too many already waiting for theirs
      close(fd);
      continue;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Conn& c = conns[fd];
    c.fd = fd;
    c.id = next_id++;
    c.since = Clock::now();
    c.over_cap = over;
    epoll_event ev{};
    ev.events = c.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    if (over) {
      rejecting++;
      c.keep_alive = false;
      respond(c, hooks.refuse(full, ""));
    } else if (hooks.connections) {
      hooks.connections(++counted);
    } else {
      ++counted;
    }
  }
}

void Server::Loop::drop(Conn& c) {
  const int fd = c.fd;
  epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  if (c.over_cap) rejecting--;
  else if (hooks.connections) hooks.connections(--counted);
  else --counted;
  conns.erase(fd);  // c dangles from here
}

void Server::Loop::read_some(Conn& c) {
  char buf[kReadChunk];
  // Reading: the parser bounds the request; otherwise at most kReadAhead bytes wait.
  const bool unbounded = c.state == State::Reading || c.state == State::Draining;
  for (int i = 0; i < 4 && !c.peer_eof && (unbounded || c.in.size() < kReadAhead); ++i) {
    const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
    if (n > 0) {
      if (c.state != State::Draining) c.in.append(buf, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < sizeof buf) return;
    } else if (n == 0) {
      c.peer_eof = true;
    } else {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) c.peer_eof = true;
      return;
    }
  }
}

std::chrono::milliseconds Server::Loop::timeout_of(const Conn& c) const {
  switch (c.state) {
    case State::Reading:
      return c.stage == Stage::Headers ? o.header_timeout : c.stage == Stage::Body ? o.body_timeout : o.idle_timeout;
    case State::Writing: return o.write_timeout;
    case State::Draining: return std::chrono::duration_cast<std::chrono::milliseconds>(kDrain);
    case State::Handling: break;
  }
  return std::chrono::milliseconds::max();
}

// Parses what a Reading connection holds: hands a complete request to the pool, answers a
// refused one, or waits for more bytes (closing when the client has hung up).
void Server::Loop::advance(Conn& c) {
  Parsed p = parse_request(c.in, o.limits);
  if (p.stage != Stage::Complete && p.stage != Stage::Refused) c.in.erase(0, p.consumed);  // blank lines
  if (p.stage != c.stage) {
    c.stage = p.stage;
    c.since = Clock::now();
  }
  switch (p.stage) {
    case Stage::Empty:
    case Stage::Headers:
    case Stage::Body:
      if (c.peer_eof) return drop(c);  // an incomplete request will never be completed
      c.path = p.request.path;
      if (p.expect_continue && !c.continue_sent) {
        c.continue_sent = true;
        c.out += "HTTP/1.1 100 Continue\r\n\r\n";
        flush(c);
      }
      return;
    case Stage::Refused:
      c.keep_alive = false;
      return respond(c, hooks.refuse(p.refusal, p.request.path.empty() ? c.path : p.request.path));
    case Stage::Complete: break;
  }
  c.in.erase(0, p.consumed);
  c.state = State::Handling;
  c.head_only = p.request.method == "HEAD";
  c.keep_alive = p.request.keep_alive;
  c.continue_sent = false;
  {
    std::lock_guard lock(mu);
    jobs.push_back({c.fd, c.id, std::move(p.request)});
  }
  cv.notify_one();
}

void Server::Loop::respond(Conn& c, const Response& r) {
  c.close_after = !c.keep_alive || r.close || stopping;
  c.out += serialize(r, c.head_only, !c.close_after);
  c.state = State::Writing;
  c.since = Clock::now();
  flush(c);
}

void Server::Loop::flush(Conn& c) {
  while (c.out_done < c.out.size()) {
    const ssize_t n = send(c.fd, c.out.data() + c.out_done, c.out.size() - c.out_done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return watch(c);
      return drop(c);  // the client is gone
    }
    c.out_done += static_cast<size_t>(n);
  }
  c.out.clear();
  c.out_done = 0;
  if (c.state != State::Writing) return watch(c);
  if (c.close_after) return drain(c);
  c.state = State::Reading;
  c.stage = Stage::Empty;
  c.since = Clock::now();
  c.head_only = false;
  const int fd = c.fd;
  const uint64_t id = c.id;
  advance(c);  // the next pipelined request, if it is here (c may be gone after it)
  if (auto it = conns.find(fd); it != conns.end() && it->second.id == id) watch(it->second);
}

void Server::Loop::drain(Conn& c) {
  if (c.peer_eof) return drop(c);
  shutdown(c.fd, SHUT_WR);
  c.state = State::Draining;
  c.since = Clock::now();
  c.in.clear();
  watch(c);
}

void Server::Loop::on_event(Conn& c, uint32_t events) {
  const int fd = c.fd;
  const uint64_t id = c.id;
  auto alive = [&] { return conns.count(fd) && conns.at(fd).id == id; };
  if (events & (EPOLLERR | EPOLLHUP)) return drop(c);  // reset, or both halves closed
  if (events & EPOLLOUT) flush(c);
  if (!alive()) return;
  if (events & EPOLLIN) {
    read_some(c);
    if (c.state == State::Draining && c.peer_eof) return drop(c);
    if (c.state == State::Reading) advance(c);
  }
  if (alive()) watch(c);
}

void Server::Loop::on_answers() {
  uint64_t count;
  [[maybe_unused]] ssize_t n = read(wake_fd, &count, sizeof count);
  std::deque<Done> answers;
  {
    std::lock_guard lock(mu);
    answers.swap(done);
  }
  for (Done& d : answers) {
    auto it = conns.find(d.fd);
    if (it == conns.end() || it->second.id != d.id) continue;  // the client hung up meanwhile
    respond(it->second, d.response);
  }
  if (stop_requested && !stopping) begin_stop();
}

// Stop accepting; drop connections without a request in the handler; the others get
// their answer with "Connection: close".
void Server::Loop::begin_stop() {
  stopping = true;
  epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);
  close(listen_fd);
  listen_fd = -1;
  std::vector<int> idle;
  for (auto& [fd, c] : conns)
    if (c.state == State::Reading) idle.push_back(fd);
    else c.close_after = true;
  for (int fd : idle) drop(conns.at(fd));
}

void Server::Loop::sweep(Clock::time_point now) {
  last_sweep = now;
  if (accept_paused && now >= accept_resume && !stopping) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listen_fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev);
    accept_paused = false;
  }
  std::vector<int> late;
  for (auto& [fd, c] : conns)
    if (c.state != State::Handling && now - c.since > timeout_of(c)) late.push_back(fd);
  for (int fd : late) {
    Conn& c = conns.at(fd);
    if (c.state == State::Reading && c.stage != Stage::Empty) {
      // Too slow: one attempt to say so, then the connection is closed, not waited for.
      const bool headers = c.stage == Stage::Headers;
      const auto limit = headers ? o.header_timeout : o.body_timeout;
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%g", limit.count() / 1000.0);
      const Response r = hooks.refuse({408, "request_timeout",
                                       std::string(headers ? "request headers" : "request body") + " not received within " +
                                           seconds + " s (--" + (headers ? "header" : "body") + "-timeout)"},
                                      c.path);
      const std::string bytes = serialize(r, false, false);
      [[maybe_unused]] ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    drop(c);
  }
}

void Server::Loop::run() {
  last_sweep = Clock::now();
  epoll_event events[256];
  while (!(stopping && conns.empty())) {
    const int n = epoll_wait(epoll_fd, events, 256, static_cast<int>(kSweep.count()));
    if (n < 0 && errno != EINTR) throw Error(std::string("epoll_wait: ") + std::strerror(errno));
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd) on_answers();
      else if (fd == listen_fd) accept_all();
      else if (auto it = conns.find(fd); it != conns.end()) on_event(it->second, events[i].events);
    }
    if (stop_requested && !stopping) begin_stop();
    const auto now = Clock::now();
    if (now - last_sweep >= kSweep) sweep(now);
  }
}

Server::Server(ServerOptions options, Hooks hooks) : loop_(std::make_unique<Loop>(std::move(options), std::move(hooks))) {
  loop_->open();
}

Server::~Server() = default;

int Server::port() const { return loop_->port; }

void Server::run() { loop_->run(); }

void Server::stop() {
  loop_->stop_requested = true;
  loop_->wake();
}

}  // namespace bertune::serve::http
