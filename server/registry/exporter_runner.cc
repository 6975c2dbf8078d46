#include "server/registry/exporter_runner.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "server/common/log.h"
#include "server/common/status.h"
#include "server/registry/load_progress.h"

extern char** environ;

namespace pg::registry {
namespace fs = std::filesystem;

namespace {

// The exporter writes `out` via a hidden `.<name>.tmp-*` sibling (and `.<name>.old-*` while
// replacing); an exporter killed or aborted (LibTorch's writer aborts when a write fails, e.g. a
// full disk) leaves them behind, so they are removed before each run and after a failed one.
void RemoveExporterTemps(const std::string& out) {
  std::error_code ec;
  const fs::path path(out);
  const std::string name = path.filename().string();
  for (const auto& e : fs::directory_iterator(path.parent_path(), ec)) {
    const std::string n = e.path().filename().string();
    if (absl::StartsWith(n, "." + name + ".tmp-") || absl::StartsWith(n, "." + name + ".old-")) {
      fs::remove_all(e.path(), ec);
    }
  }
}

// The exporter's last meaningful output line: skips blank lines and LibTorch backtrace frames.
std::string LastMeaningfulLine(const std::string& text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, absl::ByAnyChar("\r\n"));
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    const absl::string_view line = absl::StripAsciiWhitespace(*it);
    if (!line.empty() && !absl::StartsWith(line, "frame #")) return std::string(line);
  }
  return "";
}

}  // namespace

absl::Status RunExporter(const ExporterOptions& options, const std::string& checkpoint,
                         const std::string& vae_npz, const std::string& model_id,
                         const std::string& out_dir) {
  std::error_code ec;
  const std::string partial = out_dir + ".partial";
  fs::remove_all(partial, ec);
  fs::create_directories(fs::path(out_dir).parent_path(), ec);
  RemoveExporterTemps(partial);
  std::vector<std::string> args = {options.python, "-m",         "exporter", checkpoint,
                                   "--vae",        vae_npz,      "--out",    partial,
                                   "--force",      "--model-id", model_id};
  if (!options.dtype.empty()) {
    args.push_back("--dtype");
    args.push_back(options.dtype);
  }
  log::Info("running the exporter", {{"model", model_id}, {"command", absl::StrJoin(args, " ")}});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // PYTHONPATH (rather than chdir) so relative paths in the arguments keep their meaning.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, "PYTHONPATH=", 11) != 0) env_strings.emplace_back(*e);
  }
  env_strings.push_back("PYTHONPATH=" + options.module_dir);
  env_strings.push_back("PYTHONDONTWRITEBYTECODE=1");
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return absl::InternalError("pipe failed");
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork failed: ", std::strerror(errno)));
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec. Its own process group, so a cancelled load
    // kills the exporter and anything it started.
    setpgid(0, 0);
    // And it dies with the loader thread that waits for it, should the server be killed.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string tail;  // the last few KB, for the error message
  std::string line;  // the exporter's output, re-logged one JSON line per line it prints
  const auto flush_line = [&] {
    if (!line.empty()) log::Info("exporter output", {{"model", model_id}, {"line", line}});
    line.clear();
  };
  char buf[4096];
  absl::Status stopped;
  for (;;) {
    // Wake up a few times a second to notice a cancelled or timed-out load (UnloadModel,
    // --load_timeout_s): the exporter is killed instead of running on for minutes.
    pollfd pfd{pipe_fds[0], POLLIN, 0};
    const int ready = poll(&pfd, 1, 200);
    if (ready < 0 && errno == EINTR) continue;
    if (stopped.ok()) stopped = LoadStopStatus();
    if (!stopped.ok()) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      break;
    }
    if (ready == 0) continue;
    const ssize_t n = read(pipe_fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n' || buf[i] == '\r' || line.size() >= 4096) {
        flush_line();
        if (buf[i] == '\n' || buf[i] == '\r') continue;
      }
      line += buf[i];
    }
    tail.append(buf, n);
    if (tail.size() > 4096) tail.erase(0, tail.size() - 2048);
  }
  flush_line();
  close(pipe_fds[0]);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (!stopped.ok()) {
    fs::remove_all(partial, ec);
    RemoveExporterTemps(partial);
    log::Warn("exporter stopped",
              {{"model", model_id}, {"reason", std::string(stopped.message())}});
    return stopped;
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    fs::remove_all(partial, ec);
    RemoveExporterTemps(partial);
    if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 127) {
      return WithPrivateDetail(
          absl::FailedPreconditionError("cannot run the exporter (see the server's --python)"),
          absl::StrCat("cannot run the exporter with ", options.python));
    }
    const std::string how = WIFEXITED(wstatus)
                                ? absl::StrCat("exit ", WEXITSTATUS(wstatus))
                                : absl::StrCat("killed by signal ", WTERMSIG(wstatus), ": ",
                                               strsignal(WTERMSIG(wstatus)));
    // The exporter's last line names the files it read (checkpoint and bundle paths): log only.
    return WithPrivateDetail(
        absl::FailedPreconditionError(absl::StrCat("exporting ", model_id, " failed (", how, ")")),
        LastMeaningfulLine(tail));
  }
  fs::remove_all(out_dir, ec);
  fs::rename(partial, out_dir, ec);
  if (ec) {
    return WithPrivateDetail(
        absl::InternalError(absl::StrCat("cannot store the exported bundle of ", model_id)),
        absl::StrCat("rename ", partial, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace pg::registry
