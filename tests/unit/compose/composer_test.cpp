// The composer's own parts: the campaign file, VERP and Message-IDs, dot-stuffing, the send log
// that makes a campaign resumable, the plan, and composing from a CSV source with threads.
#include "compose/composer.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "compose/campaign.hpp"
#include "compose/plan.hpp"
#include "compose/send_log.hpp"

namespace mma::compose {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class CampaignDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("mma-composer-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    write("text.txt", "Hi {{first_name|you}}\n{{#news}}\n.news line\n{{/news}}\nbye {{id}}\n");
    write("list.csv",
          "id,email,first_name,topics\n1,a@x.test,Ann,news\n2,b@y.test,,\n3,bad,Cy,\n"
          "4,d@x.test,\"Dee\r\nBcc: e@x.test\",\n5,e@z.test,Ed,news\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  std::string campaign(const std::string& extra = "") {
    write("c.toml",
          "name = \"t1\"\nfrom_address = \"news@x.test\"\nenvelope_sender = "
          "\"bounces@x.test\"\nverp = true\nsubject = \"Hi {{first_name|there}}\"\ntext = "
          "\"text.txt\"\n" +
              extra + "[recipients]\nsource = \"list.csv\"\n");
    return (dir_ / "c.toml").string();
  }

  fs::path dir_;
};

TEST(VerpEncode, KeepsSafeCharactersAndHexesTheRest) {
  EXPECT_EQ(verp_encode("abc-12_Z"), "abc-12_Z");
  EXPECT_EQ(verp_encode("a.b@c d"), "a=2Eb=40c=20d");
  EXPECT_EQ(verp_encode("é"), "=C3=A9");
}

TEST(DotStuffing, DoublesALeadingDotOnEveryLine) {
  std::string out;
  append_dot_stuffed(".a\r\nb\r\n..c\r\n.\r\nd.", out);
  EXPECT_EQ(out, "..a\r\nb\r\n...c\r\n..\r\nd.");
}

TEST_F(CampaignDir, ComposesEachGoodRowOnceWithVerpAndAStableMessageId) {
  const Campaign c = load_campaign(campaign());
  EXPECT_EQ(c.sender_for("42"), "bounces+42@x.test");
  CampaignComposer composer(c, open_source(c.source), nullptr, 0, /*threads=*/3);
  std::set<std::string> keys;
  while (auto m = composer.next()) {
    keys.insert(m->key);
    EXPECT_EQ(m->sender, "bounces+" + m->key + "@x.test");
    EXPECT_EQ(m->message_id, "t1." + m->key + "@x.test");
    EXPECT_THAT(m->wire, HasSubstr("Message-ID: <t1." + m->key + "@x.test>\r\n"));
    EXPECT_THAT(m->wire, HasSubstr("bye " + m->key + "\r\n"));
    if (m->key == "1") {
      EXPECT_THAT(m->wire, HasSubstr("\r\n..news line\r\n"));  // dot-stuffed
    }
    if (m->key == "2") {
      EXPECT_THAT(m->wire, HasSubstr("Hi you\r\nbye 2"));  // no line left by the section tags
    }
  }
  composer.finish();
  EXPECT_EQ(keys, (std::set<std::string>{"1", "2", "5"}));
  EXPECT_EQ(composer.counts().rows, 5u);
  EXPECT_EQ(composer.counts().bad, 2u);  // row 3: the address; row 4: header injection
  EXPECT_EQ(composer.failure(), "");
}

TEST_F(CampaignDir, AResumedCampaignSkipsWhatTheSendLogRecorded) {
  const Campaign c = load_campaign(campaign());
  const std::string state = (dir_ / "state").string();
  {
    CampaignComposer first(c, open_source(c.source), open_file_send_log(state), 0);
    auto m = first.next();
    ASSERT_TRUE(m);
    first.accepted(*m);  // only the first one got its 250
  }
  CampaignComposer again(c, open_source(c.source), open_file_send_log(state), 0);
  std::vector<std::string> keys;
  while (auto m = again.next()) keys.push_back(m->key);
  EXPECT_EQ(keys, (std::vector<std::string>{"2", "5"}));
  EXPECT_EQ(again.counts().already_sent, 1u);
}

TEST_F(CampaignDir, TheSqliteSendLogKeepsCampaignsApart) {
  const std::string db = (dir_ / "s.db").string();
  { std::ofstream(db).flush(); }  // an empty file is an empty SQLite database
  {
    auto log = open_sqlite_send_log(db, "one");
    log->record("k1");
    EXPECT_TRUE(log->sent("k1"));
  }
  EXPECT_TRUE(open_sqlite_send_log(db, "one")->sent("k1"));
  EXPECT_FALSE(open_sqlite_send_log(db, "two")->sent("k1"));
  EXPECT_EQ(open_sqlite_send_log(db, "one")->count(), 1u);
}

TEST_F(CampaignDir, ErrorsNameTheFileLineAndKey) {
  try {
    load_campaign(campaign("htlm = \"x.html\"\n"));
    FAIL();
  } catch (const CampaignError& e) {
    EXPECT_THAT(e.what(), HasSubstr("c.toml:7: key 'htlm': unknown key"));
  }
  write("c2.toml", "name = \"x\"\nfrom_address = \"not an address\"\n");
  try {
    load_campaign((dir_ / "c2.toml").string());
    FAIL();
  } catch (const CampaignError& e) {
    EXPECT_THAT(e.what(), HasSubstr("c2.toml:2: key 'from_address'"));
  }
  try {
    load_campaign(campaign("[unsubscribe]\nurl = \"http://x.test/u\"\n"));
    FAIL();
  } catch (const CampaignError& e) {
    EXPECT_THAT(e.what(), HasSubstr("key 'unsubscribe.url': must be an https:// URL"));
  }
  write("text.txt", "Hi {{first_name\n");
  EXPECT_THROW(load_campaign(campaign()), TemplateError);
}

TEST(Plan, SuggestsAQueuePerDomainAboveTheShareWithConnectionsByShare) {
  CampaignPlan p;
  p.rows = 1002;
  p.good = 1000;
  p.bad = 2;
  p.domains = {{"big.test", 500}, {"mid.test", 300}, {"small.test", 10}};
  for (int i = 0; i < 190; ++i) p.domains.emplace_back("d" + std::to_string(i) + ".test", 1);
  PlanOptions o;
  o.total_mta = 100;
  const std::string out = format_plan(p, o, 2);
  EXPECT_THAT(out,
              HasSubstr("1002 rows: 1000 recipients to send, 2 bad rows (not sent), 193 domains"));
  EXPECT_THAT(out, HasSubstr("name = \"big-test\"\ndomains = [\"big.test\"]\nmax_mta = 50\n"));
  EXPECT_THAT(out, HasSubstr("name = \"mid-test\"\ndomains = [\"mid.test\"]\nmax_mta = 30\n"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("small.test\"]")));  // 1%: the general queue
  EXPECT_THAT(out, HasSubstr("(191 other domains)"));
}

}  // namespace
}  // namespace mma::compose
