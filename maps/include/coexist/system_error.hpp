// The errors and descriptors of system calls, shared by every part of coexist.
#pragma once

#include <stdexcept>
#include <string>

namespace coexist {

// A failed system call: `what` names the call and its object ("chmod /run/x.sock"), error() is
// the errno value; what() reads "chmod /run/x.sock: Permission denied".
class SystemError : public std::runtime_error {
public:
    SystemError(const std::string& what, int err);
    int error() const { return error_; }

private:
    int error_;
};

// Owns a file descriptor; closes it on destruction.
class FileDescriptor {
public:
    FileDescriptor() = default;
    explicit FileDescriptor(int fd) : fd_(fd) {}
    ~FileDescriptor() { reset(); }
    FileDescriptor(FileDescriptor&& o) noexcept : fd_(o.release()) {}
    FileDescriptor& operator=(FileDescriptor&& o) noexcept {
        if (this != &o) reset(o.release());
        return *this;
    }
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }
    void reset(int fd = -1);

private:
    int fd_ = -1;
};

}  // namespace coexist
