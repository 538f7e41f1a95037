// shared/log.h: the one spdlog logger of a process. Every line carries time,
// level, pid and role ("master" or "worker N"); SIGUSR1 reopens the file.
#pragma once

#include <spdlog/spdlog.h>
#include <sys/types.h>

#include <string>

namespace pf::log {

// `path` is a file (opened O_APPEND, whole lines per write) or "stderr".
// Returns false (with errno set) if the file cannot be opened.
bool Init(const std::string& path, const std::string& level, const std::string& role);
// After fork: the role shown in each line ("worker 3").
void SetRole(const std::string& role);
void SetLevel(const std::string& level);
// Reopen the file at its path (logrotate moved it). Safe to call for stderr.
bool Reopen();
// Point fd 2 at the log file too, so stray writes (sanitizers, aborts) land there.
void RedirectStderr();
// After chroot: the path the file is reopened at from now on (as seen inside).
void SetPath(const std::string& path);
// When the error log's last open created the file: hand it to uid:gid (the
// workers' user reopens it after logrotate). False with errno on failure.
bool HandCreatedFileTo(uid_t uid, gid_t gid);

// Opens a log file for appending, created 0640 if missing, the way every log
// file is opened (error log, access log; master and workers): never through
// a symlink (O_NOFOLLOW) and only a regular file, so a link planted in a log
// folder the worker user can write cannot point the next open elsewhere
// (nginx CVE-2016-1247). -1 with errno set (ELOOP for a link, EINVAL for not
// a regular file). *created: the call made the file.
int OpenLogFile(const std::string& path, bool* created = nullptr);

}  // namespace pf::log
