#!/usr/bin/perl
# bench/ecs-queries.pl NAME COUNT OUT: writes COUNT queries for NAME (type A), each with an
# EDNS Client Subnet option (RFC 7871) for a different client network, in dnsperf's binary
# input format (`dnsperf -B`: each message prefixed by its length, as on a TCP stream).
#
# The client networks are spread over every continent of geoip/networks.csv, the fixture the
# bench config uses, plus networks the database does not know (which take the policy's
# default), so the server does real lookups instead of answering one cached subnet:
#   - IPv4 /24s: a random /24 of each test range (1.128.0.0/16 and 41.0.0.0/16 give 256
#     each), and random /24s of 198.18.0.0/15 (unknown);
#   - IPv6 /56s: random /56s of 2001:218::/32 (JP) and 2a02:cf40::/29 (NO).
# The output is the same for the same arguments (fixed seed), so runs compare.
use strict;
use warnings;

@ARGV == 3 or die "usage: $0 NAME COUNT OUT\n";
my ($name, $count, $out) = @ARGV;
$count =~ /^\d+$/ && $count > 0 or die "$0: COUNT must be a positive number, not '$count'\n";
srand(7871);

# [family, fixed prefix bytes, random bytes after them, source prefix length]
my @nets = (
    [1, [81, 2, 69],     0, 24],    # GB
    [1, [89, 160, 20],   0, 24],    # SE
    [1, [2, 125, 160],   0, 24],    # GB
    [1, [175, 16, 199],  0, 24],    # CN
    [1, [67, 43, 156],   0, 24],    # BT
    [1, [202, 196, 224], 0, 24],    # PH
    [1, [216, 160, 83],  0, 24],    # US
    [1, [149, 101, 100], 0, 24],    # US
    [1, [200, 160, 0],   0, 24],    # BR
    [1, [41, 0],         1, 24],    # ZA, 256 /24s
    [1, [1, 128],        1, 24],    # AU, 256 /24s
    [1, [198, 18],       1, 24],    # unknown (RFC 2544 benchmark range), 256 /24s
    [1, [198, 19],       1, 24],    # unknown, 256 /24s
    [2, [0x20, 0x01, 0x02, 0x18], 3, 56],    # JP, /56s of a /32
    [2, [0x2a, 0x02, 0xcf, 0x40], 3, 56],    # NO, /56s of a /32 inside the /29
);

my $qname = join('', map { pack('C/a*', $_) } split(/\./, $name)) . "\0";
open(my $fh, '>:raw', $out) or die "$0: cannot write $out: $!\n";
my %seen;
for my $i (0 .. $count - 1) {
    my ($family, $fixed, $random, $prefix) = @{ $nets[$i % @nets] };
    my @addr = (@$fixed, map { int(rand(256)) } 1 .. $random);
    $seen{"$family:@addr"} = 1;
    my $ecs = pack('nCC', $family, $prefix, 0) . pack('C*', @addr);
    my $opt = "\0" . pack('nnNn', 41, 1232, 0, 4 + length($ecs)) . pack('nn', 8, length($ecs)) . $ecs;
    # id, flags (no RD), QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 1 (the OPT record)
    my $msg = pack('nnnnnn', $i & 0xffff, 0, 1, 0, 0, 1) . $qname . pack('nn', 1, 1) . $opt;
    print $fh pack('n', length($msg)), $msg;
}
close($fh) or die "$0: cannot write $out: $!\n";
printf STDERR "%s: %d queries for %s from %d client networks\n", $out, $count, $name, scalar(keys %seen);
