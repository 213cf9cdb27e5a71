#include "core/body_file.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <filesystem>
#include <string>

namespace mma {
namespace {

class BodyFileTest : public ::testing::Test {
 protected:
  std::string dir = ::testing::TempDir() + "/body_file_test_" + std::to_string(::getpid());
  void SetUp() override {
    std::filesystem::remove_all(dir);  // left by an earlier run whose process had this pid
    std::filesystem::create_directories(dir);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  static std::string read_all(const BodyFile& f, std::size_t block) {
    const BodyFile::Reader r(f);
    std::string out, buf(block, '\0');
    for (std::uint64_t pos = 0;;) {
      const long n = r.read(pos, buf.data(), block);
      if (n <= 0) break;
      out.append(buf, 0, static_cast<std::size_t>(n));
      pos += static_cast<std::uint64_t>(n);
    }
    return out;
  }
};

TEST_F(BodyFileTest, WritesReadsAndGoesWithItsLastOwner) {
  std::string path;
  {
    auto f = BodyFile::create(dir, "A.body");
    path = f->path();
    ASSERT_FALSE(f->append("Subject: x\r"));
    EXPECT_FALSE(f->ends_with_crlf());
    ASSERT_FALSE(f->append("\n"));  // CR and LF in two appends still end the content with CRLF
    EXPECT_TRUE(f->ends_with_crlf());
    ASSERT_FALSE(f->append(std::string(10000, 'b') + "\r\nend"));
    EXPECT_FALSE(f->ends_with_crlf());
    ASSERT_FALSE(f->finish());
    EXPECT_EQ(f->size(), 12u + 10000 + 5);
    EXPECT_EQ(read_all(*f, 4096), "Subject: x\r\n" + std::string(10000, 'b') + "\r\nend");
    EXPECT_TRUE(std::filesystem::exists(path));
    EXPECT_THROW(BodyFile::create(dir, "A.body"), std::system_error);  // never overwritten
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(BodyFileTest, KeptFilesStayAndAdoptedOnesReadTheSame) {
  std::string path;
  {
    auto f = BodyFile::create(dir, "B.body");
    path = f->path();
    ASSERT_FALSE(f->append("line\r\n"));
    ASSERT_FALSE(f->finish());
    ASSERT_FALSE(f->sync());
    f->keep(true);  // the spool took it over
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  auto again = BodyFile::adopt(path, 6);
  EXPECT_TRUE(again->ends_with_crlf());
  EXPECT_EQ(read_all(*again, 1), "line\r\n");
  again->keep(false);
  again.reset();
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(BodyFileTest, ReadingAVanishedFileFails) {
  auto f = BodyFile::create(dir, "C.body");
  ASSERT_FALSE(f->append("x\r\n"));
  ASSERT_FALSE(f->finish());
  std::filesystem::remove(f->path());
  const BodyFile::Reader r(*f);
  EXPECT_FALSE(r.ok());
  char c = 0;
  EXPECT_EQ(r.read(0, &c, 1), -1);
}

// What the page cache holds is read without waiting; what it does not is left to read() (on
// the disk pool) with EAGAIN, never returned wrong or short of what is cached.
TEST_F(BodyFileTest, ACachedReadTakesWhatThePageCacheHoldsAndNeverWaits) {
  auto f = BodyFile::create(dir, "D.body");
  std::string content;
  for (int i = 0; i < 20000; ++i) content += "line " + std::to_string(i) + "\r\n";
  ASSERT_FALSE(f->append(content));
  ASSERT_FALSE(f->finish());
  const BodyFile::Reader r(*f);
  std::string got, buf(64 * 1024, '\0');
  for (std::uint64_t pos = 0;;) {  // just written: all in the page cache
    const long n = r.read_cached(pos, buf.data(), buf.size());
    ASSERT_GE(n, 0) << std::strerror(errno);
    if (n == 0) break;
    got.append(buf, 0, static_cast<std::size_t>(n));
    pos += static_cast<std::uint64_t>(n);
  }
  EXPECT_EQ(got, content);

  // Written back and dropped from the page cache (where the file system keeps it elsewhere than
  // in memory: not on tmpfs), a cached read declines and read() still has it all.
  ASSERT_FALSE(f->sync());
  const int fd = ::open(f->path().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  ::close(fd);
  const long n = r.read_cached(0, buf.data(), buf.size());
  if (n < 0) {
    EXPECT_EQ(errno, EAGAIN);
  } else {
    EXPECT_EQ(std::string(buf.data(), static_cast<std::size_t>(n)),
              content.substr(0, static_cast<std::size_t>(n)));
  }
  EXPECT_EQ(read_all(*f, 4096), content);
}

}  // namespace
}  // namespace mma
