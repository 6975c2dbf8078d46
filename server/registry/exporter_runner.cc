#include "server/registry/exporter_runner.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace pg::registry {
namespace fs = std::filesystem;

absl::Status RunExporter(const ExporterOptions& options, const std::string& checkpoint,
                         const std::string& vae_npz, const std::string& model_id,
                         const std::string& out_dir) {
  std::error_code ec;
  const std::string partial = out_dir + ".partial";
  fs::remove_all(partial, ec);
  fs::create_directories(fs::path(out_dir).parent_path(), ec);
  std::vector<std::string> args = {options.python, "-m",         "exporter", checkpoint,
                                   "--vae",        vae_npz,      "--out",    partial,
                                   "--force",      "--model-id", model_id};
  std::cerr << "export: " << absl::StrJoin(args, " ") << "\n";
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
    // Child: only async-signal-safe calls until exec.
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string tail;  // the last few KB, for the error message
  char buf[4096];
  for (;;) {
    const ssize_t n = read(pipe_fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::cerr.write(buf, n);
    tail.append(buf, n);
    if (tail.size() > 4096) tail.erase(0, tail.size() - 2048);
  }
  close(pipe_fds[0]);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    fs::remove_all(partial, ec);
    const int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    if (code == 127) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot run the exporter with ", options.python, " (see --python)"));
    }
    const size_t last = tail.find_last_of('\n', tail.size() > 1 ? tail.size() - 2 : 0);
    std::string last_line = tail.substr(last == std::string::npos ? 0 : last + 1);
    while (!last_line.empty() && last_line.back() == '\n') last_line.pop_back();
    return absl::FailedPreconditionError(
        absl::StrCat("exporting ", model_id, " failed (exit ", code, "): ", last_line));
  }
  fs::remove_all(out_dir, ec);
  fs::rename(partial, out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("rename ", partial, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace pg::registry
