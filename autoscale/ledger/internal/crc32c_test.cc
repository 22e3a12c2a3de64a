// CRC-32C known answers: the test vectors of RFC 3720 (iSCSI), appendix B.4, and the standard
// check value; extending a CRC equals computing it over the concatenation.
#include "autoscale/ledger/internal/crc32c.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace autoscale::ledger::internal {
namespace {

TEST(Crc32cTest, Rfc3720Vectors) {
  unsigned char buf[48];

  std::fill(buf, buf + 32, 0x00);
  EXPECT_EQ(Crc32c(buf, 32), 0x8A9136AAu) << "32 bytes of zeros";

  std::fill(buf, buf + 32, 0xFF);
  EXPECT_EQ(Crc32c(buf, 32), 0x62A8AB43u) << "32 bytes of ones";

  for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(i);
  EXPECT_EQ(Crc32c(buf, 32), 0x46DD794Eu) << "32 incrementing bytes";

  for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(31 - i);
  EXPECT_EQ(Crc32c(buf, 32), 0x113FDB5Cu) << "32 decrementing bytes";

  // An iSCSI SCSI Read (10) command PDU.
  const unsigned char pdu[48] = {0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00,
                                 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00,
                                 0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(Crc32c(pdu, sizeof(pdu)), 0xD9963A56u) << "iSCSI read command";
}

TEST(Crc32cTest, CheckValueAndEmptyInput) {
  const std::string check = "123456789";
  EXPECT_EQ(Crc32c(check.data(), check.size()), 0xE3069283u);
  EXPECT_EQ(Crc32c("", 0), 0u);
}

TEST(Crc32cTest, ExtendingEqualsTheWhole) {
  const std::string a = "hello, ", b = "world";
  const std::string ab = a + b;
  EXPECT_EQ(Crc32cExtend(Crc32c(a.data(), a.size()), b.data(), b.size()),
            Crc32c(ab.data(), ab.size()));
  EXPECT_NE(Crc32c(a.data(), a.size()), Crc32c(b.data(), b.size()));
}

}  // namespace
}  // namespace autoscale::ledger::internal
