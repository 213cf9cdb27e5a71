#include "smtp/client_transaction.hpp"

#include <gtest/gtest.h>

#include "smtp/extensions.hpp"

namespace mma::smtp {
namespace {

Extensions ext(bool pipelining) {
  Extensions e;
  e.esmtp = true;
  e.pipelining = pipelining;
  e.size = true;
  e.eightbitmime = true;
  return e;
}

TransactionInput input(bool lmtp = false) {
  return TransactionInput{"s@x.test", {"a@y.test", "b@y.test", "c@y.test"}, 1234, true, lmtp};
}

TEST(ClientTransaction, PipelinesEnvelopeInOneWrite) {
  ClientTransaction tx(input(), ext(true));
  ASSERT_EQ(tx.step(), ClientTransaction::Step::Send);
  EXPECT_EQ(
      tx.take_commands(),
      "MAIL FROM:<s@x.test> SIZE=1234 BODY=8BITMIME\r\nRCPT TO:<a@y.test>\r\nRCPT TO:<b@y.test>\r\n"
      "RCPT TO:<c@y.test>\r\nDATA\r\n");
  tx.on_reply(make_reply(250, "2.1.0", "ok"));
  tx.on_reply(make_reply(250, "2.1.5", "ok"));
  tx.on_reply(make_reply(550, "5.1.1", "no such user"));
  tx.on_reply(make_reply(451, "4.2.1", "later"));
  EXPECT_EQ(tx.step(), ClientTransaction::Step::Read);
  EXPECT_EQ(tx.expecting(), ClientTransaction::Expect::Data);
  tx.on_reply(make_reply(354, "", "go"));
  ASSERT_EQ(tx.step(), ClientTransaction::Step::SendBody);
  tx.body_sent();
  EXPECT_EQ(tx.expecting(), ClientTransaction::Expect::DataDone);
  tx.on_reply(make_reply(250, "2.0.0", "queued"));
  ASSERT_EQ(tx.step(), ClientTransaction::Step::Done);
  EXPECT_EQ(tx.results()[0].code, 250);
  EXPECT_EQ(tx.results()[0].text, "queued");
  EXPECT_EQ(tx.results()[1].code, 550);
  EXPECT_EQ(tx.results()[2].code, 451);
  EXPECT_FALSE(tx.needs_rset());
}

// The same refusals whether the content command is DATA or (RFC 3030) BDAT with its chunk.
class RefusedEnvelope : public ::testing::TestWithParam<bool> {
 protected:
  ClientTransaction start() {
    Extensions e = ext(true);
    e.chunking = GetParam();
    TransactionInput in = input();
    in.chunking = true;
    in.chunk_size = 1236;
    ClientTransaction tx(in, e);
    tx.take_commands();
    if (tx.step() == ClientTransaction::Step::SendChunk) tx.body_sent();
    return tx;
  }
};

TEST_P(RefusedEnvelope, MailRefusedDecidesEveryone) {
  ClientTransaction tx = start();
  EXPECT_FALSE(tx.refused_before_content());  // nothing answered yet: the server may take it
  tx.on_reply(make_reply(452, "4.3.1", "full"));
  EXPECT_TRUE(tx.refused_before_content());
  for (int i = 0; i < 3; ++i) tx.on_reply(make_reply(503, "5.5.1", "need MAIL"));
  EXPECT_NE(tx.step(), ClientTransaction::Step::Done);  // DATA's (BDAT's) reply is still owed
  tx.on_reply(make_reply(503, "5.5.1", "need MAIL"));
  ASSERT_EQ(tx.step(), ClientTransaction::Step::Done);
  for (const auto& r : tx.results()) EXPECT_EQ(r.code, 452);
  EXPECT_FALSE(tx.needs_rset());
}

TEST_P(RefusedEnvelope, NoRecipientAcceptedNeedsRset) {
  ClientTransaction tx = start();
  tx.on_reply(make_reply(250, "", "ok"));
  for (int i = 0; i < 2; ++i) tx.on_reply(make_reply(550, "5.1.1", "no"));
  EXPECT_FALSE(tx.refused_before_content());  // the third RCPT may still be taken
  tx.on_reply(make_reply(550, "5.1.1", "no"));
  EXPECT_TRUE(tx.refused_before_content());
  tx.on_reply(make_reply(554, "5.5.1", "no valid recipients"));
  ASSERT_EQ(tx.step(), ClientTransaction::Step::Done);
  for (const auto& r : tx.results()) EXPECT_EQ(r.code, 550);  // the BDAT decides no one's fate
  EXPECT_TRUE(tx.needs_rset());
}

INSTANTIATE_TEST_SUITE_P(DataOrBdat, RefusedEnvelope, ::testing::Bool());

TEST(ClientTransaction, Data354WithoutRecipientsSendsOnlyTheDot) {
  ClientTransaction tx(input(), ext(true));
  tx.take_commands();
  tx.on_reply(make_reply(250, "", "ok"));
  for (int i = 0; i < 3; ++i) tx.on_reply(make_reply(550, "5.1.1", "no"));
  tx.on_reply(make_reply(354, "", "go anyway"));
  ASSERT_EQ(tx.step(), ClientTransaction::Step::SendEndOfData);
  tx.body_sent();
  tx.on_reply(make_reply(554, "", "empty"));
  ASSERT_EQ(tx.step(), ClientTransaction::Step::Done);
  for (const auto& r : tx.results()) EXPECT_EQ(r.code, 550);
}

TEST(ClientTransaction, WithoutPipeliningOneCommandAtATime) {
  ClientTransaction tx(input(), ext(false));
  EXPECT_EQ(tx.take_commands(), "MAIL FROM:<s@x.test> SIZE=1234 BODY=8BITMIME\r\n");
  tx.on_reply(make_reply(250, "", "ok"));
  EXPECT_EQ(tx.take_commands(), "RCPT TO:<a@y.test>\r\n");
  tx.on_reply(make_reply(250, "", "ok"));
  EXPECT_EQ(tx.take_commands(), "RCPT TO:<b@y.test>\r\n");
  tx.on_reply(make_reply(550, "", "no"));
  EXPECT_EQ(tx.take_commands(), "RCPT TO:<c@y.test>\r\n");
  tx.on_reply(make_reply(250, "", "ok"));
  EXPECT_EQ(tx.take_commands(), "DATA\r\n");
  tx.on_reply(make_reply(354, "", "go"));
  ASSERT_EQ(tx.step(), ClientTransaction::Step::SendBody);
  tx.body_sent();
  tx.on_reply(make_reply(250, "", "queued"));
  ASSERT_EQ(tx.step(), ClientTransaction::Step::Done);
  EXPECT_EQ(tx.results()[0].code, 250);
  EXPECT_EQ(tx.results()[1].code, 550);
  EXPECT_EQ(tx.results()[2].code, 250);
}

TEST(ClientTransaction, LmtpGivesEachRecipientItsReply) {
  ClientTransaction tx(input(true), ext(true));
  tx.take_commands();
  tx.on_reply(make_reply(250, "", "ok"));
  tx.on_reply(make_reply(250, "", "ok"));
  tx.on_reply(make_reply(550, "", "no"));
  tx.on_reply(make_reply(250, "", "ok"));
  tx.on_reply(make_reply(354, "", "go"));
  tx.body_sent();
  tx.on_reply(make_reply(250, "", "a delivered"));
  EXPECT_EQ(tx.step(), ClientTransaction::Step::Read);
  tx.on_reply(make_reply(452, "", "c over quota"));
  ASSERT_EQ(tx.step(), ClientTransaction::Step::Done);
  EXPECT_EQ(tx.results()[0].text, "a delivered");
  EXPECT_EQ(tx.results()[1].code, 550);
  EXPECT_EQ(tx.results()[2].code, 452);
}

TEST(ClientTransaction, RespectsRemoteSizeLimit) {
  Extensions e = ext(true);
  e.max_size = 1000;
  ClientTransaction tx(input(), e);
  ASSERT_EQ(tx.step(), ClientTransaction::Step::Done);
  EXPECT_EQ(tx.results()[0].code, 552);
}

TEST(ClientTransaction, WhatTheServerCannotTakeIsNotSent) {
  Extensions plain = ext(true);
  plain.eightbitmime = false;
  ClientTransaction eightbit(input(), plain);  // input() is 8-bit
  ASSERT_EQ(eightbit.step(), ClientTransaction::Step::Done);
  EXPECT_EQ(eightbit.results()[0].code, 554);
  EXPECT_EQ(eightbit.results()[0].enhanced, "5.6.3");
  TransactionInput utf8 = input();
  utf8.eightbit = false;
  utf8.smtputf8 = true;
  ClientTransaction no_utf8(utf8, ext(true));
  ASSERT_EQ(no_utf8.step(), ClientTransaction::Step::Done);
  EXPECT_EQ(no_utf8.results()[2].enhanced, "5.6.7");
  Extensions with_utf8 = ext(true);
  with_utf8.smtputf8 = true;
  ClientTransaction yes(utf8, with_utf8);
  EXPECT_EQ(yes.take_commands().substr(0, 45), "MAIL FROM:<s@x.test> SIZE=1234 SMTPUTF8\r\nRCPT");
}

TEST(ClientTransaction, RefusedAtRcptIsKnown) {
  ClientTransaction tx(input(), ext(true));
  tx.take_commands();
  tx.on_reply(make_reply(250, "", "ok"));
  tx.on_reply(make_reply(250, "", "ok"));
  tx.on_reply(make_reply(452, "4.5.3", "too many"));
  tx.on_reply(make_reply(452, "4.5.3", "too many"));
  tx.on_reply(make_reply(354, "", "go"));
  tx.body_sent();
  tx.on_reply(make_reply(250, "", "ok"));
  EXPECT_FALSE(tx.refused_at_rcpt(0));
  EXPECT_TRUE(tx.refused_at_rcpt(1));
  EXPECT_EQ(tx.results()[1].code, 452);
}

TEST(Extensions, ParsesKeywords) {
  Reply r = make_reply(
      250, "", "mx.test hello\nPIPELINING\nSIZE 5000\n8bitmime\nSTARTTLS\nENHANCEDSTATUSCODES");
  Extensions e = parse_extensions(r);
  EXPECT_TRUE(e.pipelining);
  EXPECT_TRUE(e.size);
  EXPECT_EQ(e.max_size, 5000u);
  EXPECT_TRUE(e.eightbitmime);
  EXPECT_TRUE(e.starttls);
  EXPECT_TRUE(e.enhanced);
  EXPECT_FALSE(e.smtputf8);
  EXPECT_FALSE(parse_extensions(make_reply(502, "", "no")).esmtp);
}

// RFC 3030: with CHUNKING, the content goes as one BDAT LAST right behind the envelope.
Extensions chunking(bool pipelining) {
  Extensions e = ext(pipelining);
  e.chunking = true;
  return e;
}

TransactionInput chunked(bool lmtp = false) {
  TransactionInput in = input(lmtp);
  in.chunking = true;
  in.chunk_size = 1236;
  return in;
}

TEST(ClientTransaction, ChunkingSendsTheWholeTransactionInOneWrite) {
  ClientTransaction tx(chunked(), chunking(true));
  EXPECT_EQ(
      tx.take_commands(),
      "MAIL FROM:<s@x.test> SIZE=1234 BODY=8BITMIME\r\nRCPT TO:<a@y.test>\r\nRCPT TO:<b@y.test>\r\n"
      "RCPT TO:<c@y.test>\r\nBDAT 1236 LAST\r\n");
  ASSERT_EQ(tx.step(), ClientTransaction::Step::SendChunk);  // no 354 to wait for
  tx.body_sent();
  tx.on_reply(make_reply(250, "2.1.0", "ok"));
  EXPECT_EQ(tx.expecting(), ClientTransaction::Expect::Rcpt);
  tx.on_reply(make_reply(250, "2.1.5", "ok"));
  tx.on_reply(make_reply(550, "5.1.1", "no such user"));
  tx.on_reply(make_reply(250, "2.1.5", "ok"));
  EXPECT_FALSE(tx.refused_before_content());
  EXPECT_EQ(tx.expecting(), ClientTransaction::Expect::DataDone);  // the final reply's timeout
  tx.on_reply(make_reply(250, "2.0.0", "queued"));
  ASSERT_EQ(tx.step(), ClientTransaction::Step::Done);
  EXPECT_EQ(tx.results()[0].text, "queued");
  EXPECT_EQ(tx.results()[1].code, 550);
  EXPECT_TRUE(tx.refused_at_rcpt(1));
  EXPECT_EQ(tx.results()[2].text, "queued");
  EXPECT_FALSE(tx.needs_rset());
}

TEST(ClientTransaction, ChunkingWithoutPipeliningWaitsForEachReplyThenSendsTheChunk) {
  ClientTransaction tx(chunked(), chunking(false));
  EXPECT_EQ(tx.take_commands(), "MAIL FROM:<s@x.test> SIZE=1234 BODY=8BITMIME\r\n");
  tx.on_reply(make_reply(250, "", "ok"));
  for (const char* rcpt : {"a", "b", "c"}) {
    EXPECT_EQ(tx.take_commands(), std::string("RCPT TO:<") + rcpt + "@y.test>\r\n");
    tx.on_reply(make_reply(rcpt[0] == 'b' ? 550 : 250, "", "r"));
  }
  EXPECT_EQ(tx.take_commands(), "BDAT 1236 LAST\r\n");
  ASSERT_EQ(tx.step(), ClientTransaction::Step::SendChunk);
  tx.body_sent();
  tx.on_reply(make_reply(451, "4.3.0", "try later"));
  ASSERT_EQ(tx.step(), ClientTransaction::Step::Done);
  EXPECT_EQ(tx.results()[0].code, 451);
  EXPECT_EQ(tx.results()[1].code, 550);
  EXPECT_EQ(tx.results()[2].code, 451);
  EXPECT_TRUE(tx.needs_rset());  // a refused BDAT may leave the transaction open
}

TEST(ClientTransaction, DataWhenTheServerOrTheProtocolHasNoChunking) {
  ClientTransaction plain(chunked(), ext(true));  // the server did not offer CHUNKING
  EXPECT_TRUE(plain.take_commands().ends_with("DATA\r\n"));
  EXPECT_EQ(plain.step(), ClientTransaction::Step::Read);
  ClientTransaction lmtp(chunked(true), chunking(true));  // LMTP keeps DATA's per-recipient replies
  EXPECT_TRUE(lmtp.take_commands().ends_with("DATA\r\n"));
  TransactionInput unoffered = input();  // the caller's body cannot go by BDAT (a body file)
  ClientTransaction file(unoffered, chunking(true));
  EXPECT_TRUE(file.take_commands().ends_with("DATA\r\n"));
}

}  // namespace
}  // namespace mma::smtp
