#include "core/body_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace mma {
namespace {

class BodyFileTest : public ::testing::Test {
 protected:
  std::string dir = ::testing::TempDir() + "/body_file_test_" + std::to_string(::getpid());
  void SetUp() override { std::filesystem::create_directories(dir); }
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

}  // namespace
}  // namespace mma
