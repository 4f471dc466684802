/*
 * Reference for the udp benchmark: a userspace udp tunnel in C that moves one packet per
 * syscall, the way flannel's udp backend proxy does (spec §6.3): read an IPv4 packet from the
 * TUN, decrement its TTL, send it as one UDP datagram to the single peer; write every received
 * datagram into the TUN. Default socket buffers, no offloads, no batching. It exists only to
 * put Tartan's numbers next to a per-packet C data path measured in the same run.
 *
 * usage: udp_proxy TUN_NAME LOCAL_IP PEER_IP PORT
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* TTL minus one, with the header checksum adjusted incrementally (RFC 1624). */
static int decrement_ttl(uint8_t *ip, ssize_t len) {
  if (len < 20 || (ip[0] >> 4) != 4 || ip[8] <= 1) return 0;
  ip[8]--;
  uint32_t sum = ((ip[10] << 8) | ip[11]) + 0x0100;
  sum = (sum & 0xffff) + (sum >> 16);
  ip[10] = sum >> 8;
  ip[11] = sum & 0xff;
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s TUN_NAME LOCAL_IP PEER_IP PORT\n", argv[0]);
    return 2;
  }
  int tun = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
  struct ifreq ifr = {0};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
  if (tun < 0 || ioctl(tun, TUNSETIFF, &ifr) < 0) {
    perror("tun");
    return 1;
  }
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[4]))};
  struct sockaddr_in peer = local;
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (inet_pton(AF_INET, argv[2], &local.sin_addr) != 1 ||
      inet_pton(AF_INET, argv[3], &peer.sin_addr) != 1 ||
      bind(sock, (struct sockaddr *)&local, sizeof local) < 0) {
    perror("udp");
    return 1;
  }
  static uint8_t packet[65536];
  struct pollfd fds[2] = {{.fd = tun, .events = POLLIN}, {.fd = sock, .events = POLLIN}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) continue;
    for (ssize_t n; fds[0].revents && (n = read(tun, packet, sizeof packet)) >= 0;) {
      if (decrement_ttl(packet, n)) {
        sendto(sock, packet, n, 0, (struct sockaddr *)&peer, sizeof peer);
      }
    }
    for (ssize_t n; fds[1].revents && (n = recv(sock, packet, sizeof packet, 0)) >= 0;) {
      write(tun, packet, n);
    }
  }
}
